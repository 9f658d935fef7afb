"""Name -> explainer factory registry (in the spirit of timm's ``register_model`` / ``create_model``).

Backends register a class (or any factory ``f(model, *, target_layer=None, **options) -> Explainer``) under a
name. Registration is cheap: heavy libraries (pytorch-grad-cam takes seconds to import) are imported by the
factory, only when an explainer of that kind is created.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, TypeVar, Union

from torch import Tensor, nn

from ..utils.registry import Registry
from .base import Explainer

__all__ = [
    "register_explainer",
    "unregister_explainer",
    "create_explainer",
    "resolve_explainer",
    "list_explainers",
    "is_explainer",
    "describe_explainers",
    "explainer_uses_layer",
    "explainer_accepts",
    "ExplainerSpec",
]

# Sorted listing; a low cutoff because explainer names are short and often typed from memory ("grad-cam").
_REGISTRY: Registry[Callable[..., Explainer]] = Registry("explainer", sort=True, cutoff=0.4)

F = TypeVar("F", bound=Callable[..., Explainer])

#: What :func:`resolve_explainer` accepts: a registered name, an :class:`Explainer`, or a callable
#: ``f(images (B, C, H, W), targets (B,)) -> saliency (B, 1, H, W)``.
ExplainerSpec = Union[str, Explainer, Callable[[Tensor, Tensor], Tensor]]


def register_explainer(name: str, description: str | None = None) -> Callable[[F], F]:
    """Decorator that registers an explainer class or factory under ``name``.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> from exaug.explainers import Explainer, targets_or_predicted
        >>> @register_explainer("doctest.input_abs")
        ... class InputAbs(Explainer):
        ...     description = "absolute input values summed over channels"
        ...     def _attribute(self, images, targets):
        ...         with torch.no_grad():
        ...             logits = self.model(images)
        ...         return images.abs().sum(1, keepdim=True), logits, targets_or_predicted(logits, targets)
        >>> model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 5))
        >>> create_explainer("doctest.input_abs", model)(torch.randn(2, 3, 4, 4)).shape
        torch.Size([2, 1, 4, 4])
        >>> unregister_explainer("doctest.input_abs") is InputAbs, is_explainer("doctest.input_abs")
        (True, False)

    Args:
        name: registry key (case-sensitive, unique).
        description: one line for ``exaug explainers``; defaults to the class's ``description`` attribute or
            the first line of its docstring.
    """
    if not isinstance(name, str) or not name:
        raise ValueError("explainer name must be a non-empty string")

    def decorator(factory: F) -> F:
        text = description or getattr(factory, "description", "") or (factory.__doc__ or "").strip().split("\n")[0]
        _REGISTRY.add(name, factory, text)
        return factory

    return decorator


def unregister_explainer(name: str) -> Callable[..., Explainer]:
    """Remove ``name`` from the registry and return its factory (for tests and interactive sessions).

    Raises:
        ValueError: unknown name (the message lists the valid names and the closest match).
    """
    return _REGISTRY.remove(name)


def list_explainers(pattern: str | None = None) -> list[str]:
    """Sorted names of the registered explainers, optionally filtered by a shell-style wildcard.

    Args:
        pattern: :mod:`fnmatch` pattern, case-sensitive (``"pgc.*"``, ``"*cam*"``, ``"[rs]*"``); ``None``: all.

    Example:
        >>> list_explainers("pgc.grad*")
        ['pgc.gradcam', 'pgc.gradcam++', 'pgc.gradcam_elementwise']
    """
    return _REGISTRY.names(pattern)


def is_explainer(name: str) -> bool:
    """Whether ``name`` is a registered explainer name (never raises).

    Example:
        >>> is_explainer("gradcam"), is_explainer("gradkam"), is_explainer(None)
        (True, False, False)
    """
    return name in _REGISTRY


def describe_explainers() -> dict[str, str]:
    """``{name: one-line description}`` for every registered explainer, sorted by name."""
    return _REGISTRY.describe()


def explainer_uses_layer(name: str) -> bool:
    """Whether the explainer registered as ``name`` takes a ``target_layer`` (the CAM family).

    Plain factories (not :class:`Explainer` subclasses) are assumed to accept one.
    """
    factory = _REGISTRY.get(name)
    return not (isinstance(factory, type) and issubclass(factory, Explainer)) or factory.uses_layer


def explainer_accepts(name: str, option: str) -> bool:
    """Whether the explainer registered as ``name`` takes the keyword ``option`` (e.g. ``"channel_reduction"``).

    Read from the factory's signature; a factory taking ``**kwargs`` accepts every option.
    """
    factory = _REGISTRY.get(name)
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
        TypeError: ``name`` is not a string (use :func:`resolve_explainer` for an instance or a callable).
        ValueError: unknown name (the message lists the valid names and the closest match).
    """
    if not isinstance(name, str):
        raise TypeError(
            f"name must be a registered explainer name (a str, see list_explainers()), got {type(name).__name__}; "
            "to use an Explainer instance or a callable, pass it to resolve_explainer"
        )
    factory = _REGISTRY.get(name)
    if target_layer is not None:
        if isinstance(factory, type) and issubclass(factory, Explainer) and not factory.uses_layer:
            raise ValueError(f"explainer {name!r} does not use a target_layer")
        options["target_layer"] = target_layer
    return factory(model, **options)


def resolve_explainer(
    spec: ExplainerSpec, model: nn.Module, *, target_layer: str | nn.Module | None = None, **options: Any
) -> Explainer | Callable[[Tensor, Tensor], Tensor]:
    """Turn what a user passed as "the explainer" into something callable as ``f(images, targets)``.

    The one place that interprets an explainer argument, for the augments, metrics and evaluation:

    * a registered name: ``create_explainer(spec, model, target_layer=target_layer, **options)``;
    * an :class:`Explainer`: returned as is (it is already bound to its model);
    * any other callable ``f(images (B, C, H, W), targets (B,)) -> (B, 1, H, W)``: returned as is.

    Options only configure an explainer built by name; passing them with an instance or a callable is an error
    rather than being silently ignored.

    Args:
        spec: a name from :func:`list_explainers`, an :class:`Explainer` or a callable.
        model: maps images ``(B, C, H, W)`` to logits ``(B, K)``; used when ``spec`` is a name.
        target_layer: for layer-based (CAM) methods built by name, see :func:`create_explainer`.
        **options: backend options for a name, see :func:`create_explainer`.

    Returns:
        The :class:`Explainer` built or given, or the callable.

    Raises:
        ValueError: unknown name, or ``target_layer`` / options given with an instance or a callable.
        TypeError: ``spec`` is neither a string, an :class:`Explainer` nor callable.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 5))
        >>> resolve_explainer("gradcam", model, target_layer="0")
        GradCAM(target_layer='0', relu=True)
        >>> gradcam = resolve_explainer("gradcam", model)
        >>> resolve_explainer(gradcam, model) is gradcam
        True
        >>> resolve_explainer(gradcam, model, relu=False)
        Traceback (most recent call last):
        ...
        ValueError: explainer options (relu) apply only when the explainer is given by name, not with a GradCAM
    """
    if isinstance(spec, str):
        return create_explainer(spec, model, target_layer=target_layer, **options)
    if isinstance(spec, Explainer) or callable(spec):
        if target_layer is not None or options:
            given = ", ".join((["target_layer"] if target_layer is not None else []) + sorted(options))
            raise ValueError(
                f"explainer options ({given}) apply only when the explainer is given by name, "
                f"not with a {type(spec).__name__}"
            )
        return spec
    raise TypeError(
        "explainer must be a registered name, an Explainer, or a callable f(images, targets) -> (B, 1, H, W), "
        f"got {type(spec).__name__}"
    )
