"""Name -> explainer factory registry (in the spirit of timm's ``register_model`` / ``create_model``).

Backends register a class (or any factory ``f(model, *, target_layer=None, **options) -> Explainer``) under a
name. Registration is cheap: heavy libraries (pytorch-grad-cam takes seconds to import) are imported by the
factory, only when an explainer of that kind is created.
"""

from __future__ import annotations

import difflib
import inspect
from typing import Any, Callable, TypeVar

from torch import nn

from .base import Explainer

__all__ = ["register_explainer", "create_explainer", "list_explainers", "describe_explainers", "explainer_uses_layer"]

_REGISTRY: dict[str, Callable[..., Explainer]] = {}
_DESCRIPTIONS: dict[str, str] = {}

F = TypeVar("F", bound=Callable[..., Explainer])


def register_explainer(name: str, description: str | None = None) -> Callable[[F], F]:
    """Decorator that registers an explainer class or factory under ``name``.

    Example:
        >>> @register_explainer("my_saliency")
        ... class MySaliency(Explainer):
        ...     description = "absolute input gradient"
        ...     def _attribute(self, images, targets): ...

    Args:
        name: registry key (case-sensitive, unique).
        description: one line for ``exaug explainers``; defaults to the class's ``description`` attribute or
            the first line of its docstring.
    """
    if not isinstance(name, str) or not name:
        raise ValueError("explainer name must be a non-empty string")

    def decorator(factory: F) -> F:
        if name in _REGISTRY and _REGISTRY[name] is not factory:
            raise ValueError(f"an explainer named {name!r} is already registered")
        _REGISTRY[name] = factory
        text = description or getattr(factory, "description", "") or (factory.__doc__ or "").strip().split("\n")[0]
        _DESCRIPTIONS[name] = text
        return factory

    return decorator


def list_explainers() -> list[str]:
    """Sorted names of all registered explainers."""
    return sorted(_REGISTRY)


def describe_explainers() -> dict[str, str]:
    """``{name: one-line description}`` for every registered explainer, sorted by name."""
    return {name: _DESCRIPTIONS[name] for name in list_explainers()}


def explainer_uses_layer(name: str) -> bool:
    """Whether the explainer registered as ``name`` takes a ``target_layer`` (the CAM family).

    Plain factories (not :class:`Explainer` subclasses) are assumed to accept one.
    """
    if name not in _REGISTRY:
        create_explainer(name, nn.Identity())  # raises the helpful unknown-name error
    factory = _REGISTRY[name]
    return not (isinstance(factory, type) and issubclass(factory, Explainer)) or factory.uses_layer


def explainer_accepts(name: str, option: str) -> bool:
    """Whether the explainer registered as ``name`` takes the keyword ``option`` (e.g. ``"channel_reduction"``).

    Read from the factory's signature; a factory taking ``**kwargs`` accepts every option.
    """
    if name not in _REGISTRY:
        create_explainer(name, nn.Identity())  # raises the helpful unknown-name error
    factory = _REGISTRY[name]
    parameters = inspect.signature(factory).parameters  # a class's signature is its __init__'s, minus self
    return option in parameters or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())


def create_explainer(
    name: str, model: nn.Module, *, target_layer: str | nn.Module | None = None, **options: Any
) -> Explainer:
    """Build the explainer registered as ``name`` for ``model``.

    Args:
        name: a name from :func:`list_explainers`.
        model: maps images ``(B, C, H, W)`` to logits ``(B, K)``.
        target_layer: dotted module path or module, for layer-based (CAM) methods; ``None`` picks a default.
        **options: backend-specific options (see ``docs/explainers.md``).

    Raises:
        ValueError: unknown name (the message lists the valid names and the closest match).
    """
    if name not in _REGISTRY:
        valid = list_explainers()
        close = difflib.get_close_matches(name, valid, n=1, cutoff=0.4)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"unknown explainer {name!r}.{hint} Valid names: {', '.join(valid)}")
    factory = _REGISTRY[name]
    if target_layer is not None:
        if isinstance(factory, type) and issubclass(factory, Explainer) and not factory.uses_layer:
            raise ValueError(f"explainer {name!r} does not use a target_layer")
        options["target_layer"] = target_layer
    return factory(model, **options)
