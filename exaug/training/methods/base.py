"""The training-method interface: what one epoch of a method does, which networks its optimiser trains, what
it logs and prints. The :class:`~exaug.training.Trainer` knows no method name.

Design
------
The trainer owns everything every method shares: data loaders, the networks (encoder + projection head
``trainer.model``, linear classifier ``trainer.classifier``, and ``trainer.classifier_model`` = encoder +
classifier), their DDP/compiled forwards, two SGD optimisers with cosine schedules, AMP, checkpoints and resume,
the metrics log, the progress bars and validation. A :class:`TrainingMethod` (one instance per trainer, created
from the registry with :func:`~exaug.training.methods.create_method`) decides:

* **the schedule**: :meth:`~TrainingMethod.total_epochs` and :meth:`~TrainingMethod.run_epoch`, which runs the
  epoch's stages (Algorithm 1: an encoder epoch and a classifier epoch; two-stage ``supcon_ori``: encoder epochs
  then classifier epochs; joint methods: one cross-entropy-style epoch) and returns the metrics of the epoch's
  row; it calls ``trainer.validate()`` on the epochs that validate;
* **what the encoder optimiser trains** (:meth:`~TrainingMethod.encoder_parameters`) and how long the
  classifier's cosine schedule is (:meth:`~TrainingMethod.classifier_schedule_epochs`);
* **its losses and augmentations**, built in :meth:`~TrainingMethod.setup`;
* **what it logs**: :meth:`~TrainingMethod.metric_keys` declares the exact keys of each epoch's row (a contract
  test checks them for every registered method) and :attr:`~TrainingMethod.print_keys` the ones printed;
* **its options**: :meth:`~TrainingMethod.validate_config` checks the :class:`~exaug.training.TrainConfig` fields
  it reads (the built-in methods keep their historical fields such as ``edda_ratio`` and flags such as
  ``--edda-ratio``); a plugin declares new options in :attr:`~TrainingMethod.options`, set through
  ``TrainConfig.method_options`` (``--method-options '{"name": value}'`` or a config file) and read with
  :meth:`~TrainingMethod.option`;
* **extra checkpoint state** (:meth:`~TrainingMethod.state_dict` / :meth:`~TrainingMethod.load_state_dict`,
  empty for the built-in methods).

Methods build their steps from the trainer's public helpers: ``trainer.reseed(epoch, stage)`` (every stage of
every epoch reseeds all generators from ``(seed, epoch, stage, rank)``, which makes resumed runs exact),
``trainer.contrastive_batches(epoch)`` / ``trainer.single_batches(epoch, stage)`` (batches on the device, with a
progress bar), ``trainer.autocast()``, ``trainer.optimizer_step(optimizer, loss, epoch, step)`` (NaN check,
AMP scaler, progress bar loss), ``trainer.all_sum(tensor)`` / ``trainer.all_mean(total, steps)`` (reductions
over ranks, one host sync each) and ``trainer.validate()``.

Families: :class:`~exaug.training.methods.cross_entropy.JointMethod` (encoder + classifier trained together;
override ``step_loss``: ``ce``, ``edda``, ``cgc``) and
:class:`~exaug.training.methods.contrastive.ContrastiveMethod` (Algorithm 1: ``supcon``, ``excon``, ``exconb``;
``supcon_ori``).

How to add a method
-------------------
Write one module with a subclass of :class:`TrainingMethod` (usually of one of the two families), decorate it
with :func:`~exaug.training.methods.register_method`, import the module before building the
:class:`~exaug.training.TrainConfig`, and add tests (the contract test in ``tests/training`` runs every registered
method). Example: cross-entropy with label smoothing, a plugin option, trained for one epoch:

    >>> import contextlib, io, tempfile
    >>> import torch.nn.functional as F
    >>> from exaug.training import TrainConfig, Trainer
    >>> from exaug.training.methods import JointMethod, MethodOption, register_method, unregister_method
    >>> @register_method("ce_smooth_doctest", "cross-entropy with label smoothing")
    ... class SmoothCrossEntropy(JointMethod):
    ...     options = {"smoothing": MethodOption(0.1, "label smoothing", lambda v: 0.0 <= v < 1.0, "in [0, 1)")}
    ...     def step_loss(self, images, labels, epoch):
    ...         with self.trainer.autocast():
    ...             logits = self.trainer.joint_forward(images)
    ...         loss = F.cross_entropy(logits.float(), labels, label_smoothing=self.option("smoothing"))
    ...         return loss, logits, {}
    >>> config = TrainConfig(method="ce_smooth_doctest", method_options={"smoothing": 0.2}, dataset="synthetic",
    ...                      model="resnet18", width=0.0625, feat_dim=16, epochs=1, batch_size=16, train_samples=32,
    ...                      eval_samples=16, quiet=True, device="cpu", out=tempfile.mkdtemp())
    >>> with contextlib.redirect_stdout(io.StringIO()):  # the per-epoch line
    ...     summary = Trainer(config).fit()
    >>> summary["status"], summary["epochs_completed"], summary["method"]
    ('finished', 1, 'ce_smooth_doctest')
    >>> unregister_method("ce_smooth_doctest")
"""

from __future__ import annotations

import abc
import dataclasses
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Iterable, Mapping

from torch import nn

from .registry import closest_hint

if TYPE_CHECKING:  # annotations only: the trainer imports the methods package
    from ..config import TrainConfig
    from ..trainer import Trainer

__all__ = ["CLASSIFIER_KEYS", "MethodOption", "TrainingMethod", "VALIDATION_KEYS"]

#: Row keys of a linear-classifier stage and of validation (``trainer.validate()``).
CLASSIFIER_KEYS = ("classifier_loss", "train_top1", "classifier_lr")
VALIDATION_KEYS = ("val_top1", "val_loss")


@dataclasses.dataclass(frozen=True)
class MethodOption:
    """A plugin method's option, set in ``TrainConfig.method_options`` and read with :meth:`TrainingMethod.option`.

    Args:
        default: the value when the option is not given.
        help: one line describing it.
        check: ``check(value) -> bool``; ``False`` makes the config invalid.
        expected: what ``check`` requires, for the error message (``"in [0, 1)"``).
    """

    default: Any
    help: str
    check: Callable[[Any], bool] | None = None
    expected: str = "valid"


class TrainingMethod(abc.ABC):
    """One training method; subclass, implement :meth:`run_epoch` and :meth:`metric_keys`, and register it.

    Args:
        trainer: the :class:`~exaug.training.Trainer` that runs this method; it owns data, networks,
            optimisers and the helpers listed in the module docstring.

    Attributes:
        name, description: set by :func:`~exaug.training.methods.register_method`.
        joint: the encoder optimiser trains encoder and classifier together (cross-entropy style); otherwise it
            trains encoder + projection head and the classifier has its own stage.
        uses_explanations: the method explains training images; the trainer then builds a
            :class:`~exaug.augment.SaliencyCache` when ``saliency_refresh_epochs`` > 1 (``trainer.saliency_cache``).
        options: plugin options (name -> :class:`MethodOption`), read from ``TrainConfig.method_options``.
        print_keys: row keys printed in the per-epoch line (when present), in this order.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    joint: ClassVar[bool] = False
    uses_explanations: ClassVar[bool] = False
    options: ClassVar[Mapping[str, MethodOption]] = {}
    print_keys: ClassVar[tuple[str, ...]] = ("encoder_loss", "classifier_loss", "val_top1")

    def __init__(self, trainer: "Trainer") -> None:
        self.trainer = trainer
        self.config = trainer.config

    # -- configuration --------------------------------------------------------------------------------------
    @classmethod
    def validate_config(cls, config: "TrainConfig") -> None:
        """Check the config fields this method family reads; raise ``ValueError`` naming the field.

        Called for every registered method on every config (so a bad ``--edda-ratio`` fails early whatever the
        method), hence it must only look at fields, never at ``config.method``.
        """

    @classmethod
    def check_method_options(cls, config: "TrainConfig") -> None:
        """Validate ``config.method_options`` against :attr:`options` (unknown names, failed checks)."""
        for key, value in config.method_options.items():
            if key not in cls.options:
                valid = ", ".join(cls.options) or "none"
                raise ValueError(f"method {cls.name!r} has no option {key!r}.{closest_hint(key, list(cls.options))} "
                                 f"Its method_options: {valid}")
            spec = cls.options[key]
            if spec.check is not None and not spec.check(value):
                raise ValueError(f"method_options[{key!r}] of method {cls.name!r} must be {spec.expected}, "
                                 f"got {value!r}")

    def option(self, key: str) -> Any:
        """The value of the plugin option ``key`` (``config.method_options`` or its default)."""
        if key not in self.options:
            raise KeyError(f"method {self.name!r} declares no option {key!r}; declare it in `options`")
        return self.config.method_options.get(key, self.options[key].default)

    # -- schedule and optimisation --------------------------------------------------------------------------
    @classmethod
    def total_epochs(cls, config: "TrainConfig") -> int:
        """Number of epochs (rows) of a run: ``config.epochs`` unless the schedule adds stages."""
        return config.epochs

    def classifier_schedule_epochs(self) -> int:
        """Length of the linear classifier's cosine schedule, in classifier epochs."""
        return self.config.epochs

    def encoder_parameters(self) -> Iterable[nn.Parameter]:
        """Parameters of the encoder optimiser: encoder + classifier for :attr:`joint` methods, else encoder +
        projection head."""
        network = self.trainer.classifier_model if self.joint else self.trainer.model
        return list(network.parameters())

    def setup(self) -> None:
        """Build losses and augmentations; called once, after the networks and optimisers exist."""

    # -- one epoch ------------------------------------------------------------------------------------------
    @abc.abstractmethod
    def run_epoch(self, epoch: int) -> dict[str, Any]:
        """Train epoch ``epoch`` (0-based) and return its metrics (the keys of :meth:`metric_keys`)."""

    @abc.abstractmethod
    def metric_keys(self, epoch: int) -> tuple[str, ...]:
        """The exact keys :meth:`run_epoch` returns for ``epoch``, in order (the trainer adds ``epoch``,
        ``method`` and ``epoch_time``)."""

    # -- reporting and state --------------------------------------------------------------------------------
    def resolved_settings(self) -> dict[str, Any]:
        """Settings the method resolved at setup, added to ``config.json``'s ``resolved`` block."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        """Method state that checkpoints must keep beyond networks, optimisers and RNGs (none by default)."""
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        if state:
            raise ValueError(f"method {self.name!r} keeps no checkpoint state, got keys {sorted(state)}")
