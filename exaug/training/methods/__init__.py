"""Training methods as plugins: the :class:`TrainingMethod` interface, its registry and the built-in methods.

Importing this package registers, in order, ``ce``, ``supcon``, ``supcon_ori``, ``excon``, ``exconb``, ``edda``
and ``cgc``. See :mod:`exaug.training.methods.base` for the design and how to add a method.
"""

from .base import CLASSIFIER_KEYS, VALIDATION_KEYS, MethodOption, TrainingMethod
from .registry import (
    METHODS,
    MethodNames,
    closest_hint,
    create_method,
    describe_methods,
    get_method,
    is_method,
    list_methods,
    register_method,
    unregister_method,
)

# Built-in methods; the import order is the registration order (what `exaug train --help` lists).
from .cross_entropy import CrossEntropy, JointMethod  # isort: skip
from .contrastive import ContrastiveMethod, ExCon, ExConB, SupCon, TwoStageSupCon, build_mask_augment  # isort: skip
from .edda import EDDA  # isort: skip
from .cgc import CGC  # isort: skip
from . import mixing  # isort: skip  # noqa: F401  (cutmix, mixup, saliencymix, keep*, attentive_cutmix, snapmix, sgt)

__all__ = [
    "CGC", "CLASSIFIER_KEYS", "EDDA", "METHODS", "VALIDATION_KEYS", "ContrastiveMethod", "CrossEntropy", "ExCon",
    "ExConB", "JointMethod", "MethodNames", "MethodOption", "SupCon", "TrainingMethod", "TwoStageSupCon",
    "build_mask_augment", "closest_hint", "create_method", "describe_methods", "get_method", "is_method", "list_methods", "register_method",
    "unregister_method",
]
