"""Model outputs as logits: the one adapter between what a classifier's forward returns and the tensor exaug uses.

Explainers, augments and metrics call the user's classifier and read its output as ``(B, K)`` logits. Models from
other libraries do not always return a tensor: Hugging Face ``transformers`` returns a ``ModelOutput`` (an
``OrderedDict`` that also has attributes, e.g. ``ImageClassifierOutput(logits=...)``), or a tuple whose first element
is the logits with ``return_dict=False``; other code returns a plain ``dict``. :func:`logits_of` reads all of them,
and :class:`LogitsOnly` is the same reading as a module, for libraries (Captum, pytorch-grad-cam) that call the model
themselves and index its output.

Layers have the same problem one level down: transformer blocks often return ``(hidden_states, ...)``.
:func:`layer_tensor` is the tensor a layer output holds (what a CAM reads), :func:`with_layer_tensor` swaps it in a
forward hook, and :func:`tuple_output_tapped` lets a library that hooks a layer and expects a tensor hook an
identity instead.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

from torch import Tensor, nn

__all__ = ["logits_of", "LogitsOnly", "layer_tensor", "with_layer_tensor", "tuple_output_tapped"]

_EXPECTED = (
    "expected a tensor of logits, a mapping with a 'logits' entry (or a single tensor value), an object with a "
    "'.logits' tensor attribute (transformers' ModelOutput), or a tuple / list whose first element is the logits"
)


def _describe(output: Any) -> str:
    """What a model returned, for the error message (type, and the keys of a mapping)."""
    if isinstance(output, Mapping):
        return f"{type(output).__name__} with keys {list(output.keys())!r}"
    if isinstance(output, (tuple, list)):
        first = type(output[0]).__name__ if output else "nothing"
        return f"{type(output).__name__} of length {len(output)} starting with {first}"
    return type(output).__name__


def logits_of(output: Any) -> Tensor:
    """The logits in a model's output.

    Accepted, in this order: a ``Tensor`` (returned as is); a mapping with a ``"logits"`` entry, or with exactly one
    value that is a tensor (transformers' ``ModelOutput`` is a mapping holding only the fields that are set); an
    object with a ``logits`` tensor attribute; a tuple or list whose first element is a tensor (transformers'
    ``return_dict=False``).

    Args:
        output: whatever the model's forward returned.

    Returns:
        The logits tensor itself (no copy, the autograd graph is kept).

    Raises:
        TypeError: no logits can be found; the message names what was returned and what is expected.

    Shape:
        any of the above holding ``(B, K)`` -> ``(B, K)`` (the shape is not checked here).

    Example:
        >>> import torch
        >>> logits = torch.randn(2, 10)
        >>> logits_of(logits) is logits
        True
        >>> logits_of({"logits": logits, "hidden": torch.zeros(2, 4)}) is logits
        True
        >>> logits_of((logits, None)) is logits   # a tuple: transformers' return_dict=False
        True
        >>> logits_of({"features": torch.zeros(2, 4), "hidden": torch.zeros(2, 4)})
        Traceback (most recent call last):
        ...
        TypeError: cannot read logits from the model's output (got dict with keys ['features', 'hidden']): ...
    """
    if isinstance(output, Tensor):
        return output
    if isinstance(output, Mapping):
        logits = output.get("logits")
        if isinstance(logits, Tensor):
            return logits
        tensors = [value for value in output.values() if isinstance(value, Tensor)]
        if "logits" not in output and len(tensors) == 1 and len(output) == 1:
            return tensors[0]
    else:
        # Mappings are read by key only: a dict subclass's attributes are not its entries.
        logits = getattr(output, "logits", None)
        if isinstance(logits, Tensor):
            return logits
        if isinstance(output, (tuple, list)) and output and isinstance(output[0], Tensor):
            return output[0]
    raise TypeError(f"cannot read logits from the model's output (got {_describe(output)}): {_EXPECTED}")


class LogitsOnly(nn.Module):
    """``model`` with a forward that returns :func:`logits_of` its output: for code that indexes the output.

    The model is a submodule (its layers, parameters and hooks are the wrapped model's own); wrapping a model that
    already returns a tensor changes nothing.

    Args:
        model: any module whose forward returns one of the outputs :func:`logits_of` reads.

    Shape:
        whatever ``model`` takes -> ``(B, K)``.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> class DictNet(nn.Module):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.fc = nn.Linear(4, 3)
        ...     def forward(self, x):
        ...         return {"logits": self.fc(x)}
        >>> net = DictNet()
        >>> x = torch.randn(2, 4)
        >>> torch.equal(LogitsOnly(net)(x), net.fc(x))
        True
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        self.model = model

    def forward(self, *args: Any, **kwargs: Any) -> Tensor:
        return logits_of(self.model(*args, **kwargs))


# -- layer outputs ----------------------------------------------------------------------------------------------


def layer_tensor(output: Any) -> Tensor:
    """The tensor a layer output holds: the output itself, or element 0 of a tuple / list.

    Transformer blocks often return tuples (Hugging Face layers and attention modules: ``(hidden_states, ...)``);
    their first element is the hidden states that flow on, so that is what a CAM reads.

    Raises:
        TypeError: neither a tensor nor a tuple / list starting with one.
    """
    if isinstance(output, Tensor):
        return output
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], Tensor):
        return output[0]
    raise TypeError(
        f"the target layer must output a tensor (or a tuple starting with one), got {type(output).__name__}"
    )


def with_layer_tensor(output: Any, tensor: Tensor) -> Any:
    """``output`` with its :func:`layer_tensor` replaced by ``tensor`` (what a forward hook returns to swap it)."""
    if isinstance(output, Tensor):
        return tensor
    return type(output)((tensor, *output[1:]))


@contextlib.contextmanager
def tuple_output_tapped(layer: nn.Module, tap: nn.Module) -> Iterator[nn.Module]:
    """Inside the block, the tensor of every tuple output of ``layer`` (element 0) goes through ``tap``.

    Libraries that hook a target layer (pytorch-grad-cam) expect its output to be a tensor; a transformer block that
    returns ``(hidden_states, ...)`` is explained by hooking ``tap`` (e.g. an ``nn.Identity``) instead: its hooks
    see the hidden states, and whatever ``tap`` returns flows on in their place. Tensor outputs are left alone. The
    hook on ``layer`` is removed on exit.
    """

    def through_tap(module: nn.Module, inputs: Any, output: Any) -> Any:
        if isinstance(output, Tensor):
            return None
        return with_layer_tensor(output, tap(layer_tensor(output)))

    handle = layer.register_forward_hook(through_tap)
    try:
        yield tap
    finally:
        handle.remove()
