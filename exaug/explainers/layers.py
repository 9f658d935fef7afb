"""Layer outputs as feature maps: token / channels-last layouts, default layers, wrapped models.

Every layer-based backend (the native CAM family, ``captum.layer_gradcam``, every ``pgc.*``, :func:`cgc_heatmaps
<exaug.losses.cgc.cgc_heatmaps>`) reads its layer through :func:`to_feature_map`, so all of them understand the same
layouts:

* ``(B, C, h, w)``: a convolutional feature map, used as is;
* ``(B, N, C)``: a token sequence (ViT, DeiT, MLP-Mixer) whose last ``N - k`` tokens lie on an ``h x w`` grid with
  the images' aspect ratio. ``k`` (class, distillation, register tokens, always *leading*) is the smallest number in
  ``0..MAX_EXTRA_TOKENS`` for which ``N - k`` fits such a grid (a perfect square for square images);
* ``(B, h, w, C)``: a channels-last (NHWC) stage output (timm Swin, ConvNeXt blocks in NHWC);
* a tuple ``(hidden_states, ...)`` (Hugging Face blocks and attention modules): read through its first element.

A 4-D output is read as NCHW when its last two dimensions have the images' aspect ratio (within one cell) and as
NHWC when only its middle two do; when both or neither fit (e.g. ``(B, 8, 8, 8)``) it is NCHW, PyTorch's convention.
``layout="nhwc"`` / ``"nchw"`` / ``"tokens"`` force a reading, and ``reshape_transform`` (pytorch-grad-cam's
convention: a callable from the layer output to ``(B, C, h, w)``) replaces the rule altogether. Every reading is a
view / permutation / slice, so gradients flow through it.

Wrappers (``DataParallel``, ``DistributedDataParallel``, ``torch.compile``'s ``OptimizedModule``) do not change layer
paths: ``"encoder.layer2"`` names ``encoder.module.layer2`` in ``Classifier(DataParallel(encoder), linear)``.
"""

from __future__ import annotations

import contextlib
import difflib
import math
from typing import Any, Callable, Iterator, Optional

import torch
from torch import Tensor, nn

from ..utils.isolation import isolated
from ..utils.outputs import layer_tensor

__all__ = [
    "LAYOUTS",
    "MAX_EXTRA_TOKENS",
    "ReshapeTransform",
    "to_feature_map",
    "feature_map_layout",
    "check_layout",
    "unwrap_model",
    "unwrapped_children",
    "module_tree_restored",
    "layer_called",
    "layer_not_called_error",
    "layer_paths",
    "resolve_layer",
    "find_default_cam_layer",
]

#: Accepted values of the ``layout`` option.
LAYOUTS: tuple[str, ...] = ("auto", "nchw", "nhwc", "tokens")
#: Largest number of leading non-grid tokens the automatic token rule considers.
MAX_EXTRA_TOKENS = 16

ReshapeTransform = Callable[[Tensor], Tensor]

# Path components that never make a sensible CAM layer: attention internals and patch embeddings.
_EXCLUDED_PARTS = frozenset({"attn", "self_attention", "attention", "q_norm", "k_norm", "qkv", "patch_embed",
                             "conv_proj"})


def check_layout(layout: str) -> str:
    """Validate the ``layout`` option (one of :data:`LAYOUTS`)."""
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    return layout


def _fits(h: int, w: int, image_size: tuple[int, int] | None) -> bool:
    """Whether an ``h x w`` grid has the images' aspect ratio, within one cell (strided layers round)."""
    if image_size is None:
        return h == w
    big_h, big_w = image_size
    return abs(h * big_w - w * big_h) <= max(big_h, big_w)


def _token_grid(n: int, image_size: tuple[int, int] | None) -> tuple[int, int, int] | None:
    """``(k, h, w)``: the fewest leading extra tokens ``k`` such that ``n - k`` tokens form an ``h x w`` grid."""
    big_h, big_w = image_size if image_size is not None else (1, 1)
    for k in range(0, min(MAX_EXTRA_TOKENS, n - 4) + 1):
        grid = n - k
        # h / w = H / W and h * w = grid  ->  h = sqrt(grid * H / W).
        h = round(math.sqrt(grid * big_h / big_w))
        if h > 0 and grid % h == 0 and h * (grid // h) == grid and h * big_w == (grid // h) * big_h:
            return k, h, grid // h
    return None


def feature_map_layout(shape: torch.Size | tuple[int, ...], image_size: tuple[int, int] | None = None,
                       layout: str = "auto") -> str | None:
    """How :func:`to_feature_map` reads an output of this shape: ``"nchw"``, ``"nhwc"``, ``"tokens"``, or ``None``
    when ``layout="auto"`` finds no fitting reading (not 3-D/4-D, no token grid, or a 4-D output whose spatial size
    fits neither reading's aspect ratio; :func:`to_feature_map` then still reads 4-D outputs as NCHW, but the
    default-layer search skips them)."""
    check_layout(layout)
    if layout != "auto":
        return layout
    if len(shape) == 3:
        return "tokens" if _token_grid(shape[1], image_size) is not None else None
    if len(shape) == 4:
        nchw, nhwc = _fits(shape[2], shape[3], image_size), _fits(shape[1], shape[2], image_size)
        if nhwc and not nchw:
            return "nhwc"
        return "nchw" if nchw else None
    return None


def to_feature_map(
    output: Tensor,
    reshape_transform: ReshapeTransform | None = None,
    *,
    layout: str = "auto",
    image_size: tuple[int, int] | None = None,
) -> Tensor:
    """A layer output as a ``(B, C, h, w)`` feature map (differentiable).

    Args:
        output: the layer's output, ``(B, C, h, w)``, ``(B, N, C)`` tokens or ``(B, h, w, C)``; a tuple / list
            output is read through its first element (:func:`~exaug.utils.outputs.layer_tensor`).
        reshape_transform: the user's own reading (pytorch-grad-cam's convention); overrides ``layout``.
        layout: ``"auto"`` (the rule in the module docstring), ``"nchw"``, ``"nhwc"`` or ``"tokens"``.
        image_size: ``(H, W)`` of the explained images: the aspect ratio the grid must have (``None``: square).

    Returns:
        ``(B, C, h, w)``; a permuted view for NHWC, the grid tokens for token sequences.

    Raises:
        ValueError: the output cannot be read as a feature map (the message says how to pass a reshape).

    Shape:
        ``(B, C, h, w)`` | ``(B, N, C)`` | ``(B, h, w, C)`` -> ``(B, C, h, w)``.

    Example:
        >>> import torch
        >>> tokens = torch.randn(2, 1 + 16, 8)  # a class token, then a 4x4 grid of 8-d tokens
        >>> to_feature_map(tokens).shape
        torch.Size([2, 8, 4, 4])
        >>> torch.equal(to_feature_map(tokens)[:, :, 1, 2], tokens[:, 1 + 1 * 4 + 2])
        True
        >>> to_feature_map(torch.randn(2, 4, 4, 32)).shape  # NHWC: only dims 1, 2 have the images' aspect ratio
        torch.Size([2, 32, 4, 4])
    """
    output = layer_tensor(output)
    if reshape_transform is not None:
        fmap = reshape_transform(output)
        if not isinstance(fmap, Tensor) or fmap.dim() != 4:
            got = tuple(fmap.shape) if isinstance(fmap, Tensor) else type(fmap).__name__
            raise ValueError(f"reshape_transform must return a (B, C, h, w) tensor, got {got}")
        return fmap
    kind = feature_map_layout(output.shape, image_size, layout)
    if kind == "nchw" or (kind is None and output.dim() == 4):
        # Neither reading fits the aspect ratio: keep PyTorch's convention (what an explicit CNN layer always got).
        if output.dim() != 4:
            raise ValueError(f"layout='nchw' needs a 4-D output, got {tuple(output.shape)}")
        return output
    if kind == "nhwc":
        if output.dim() != 4:
            raise ValueError(f"layout='nhwc' needs a 4-D output, got {tuple(output.shape)}")
        return output.permute(0, 3, 1, 2)
    if kind == "tokens" and output.dim() == 3:
        grid = _token_grid(output.shape[1], image_size)
        if grid is not None:
            k, h, w = grid
            return output[:, k:].transpose(1, 2).unflatten(2, (h, w))
    raise ValueError(
        f"cannot read a layer output of shape {tuple(output.shape)} as a (B, C, h, w) feature map; expected "
        f"(B, C, h, w), (B, h, w, C) or (B, N, C) tokens with at most {MAX_EXTRA_TOKENS} leading extra tokens on a "
        "grid with the images' aspect ratio. Pass reshape_transform=<callable returning (B, C, h, w)> or choose "
        "another target_layer"
    )


# -- wrapped models ------------------------------------------------------------------------------------------------


def _inner(module: nn.Module) -> nn.Module | None:
    """The wrapped module of a DataParallel / DDP / torch.compile wrapper, else ``None``."""
    if isinstance(module, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
        return module.module
    inner = getattr(module, "_orig_mod", None)  # torch._dynamo.eval_frame.OptimizedModule
    return inner if isinstance(inner, nn.Module) else None


def unwrap_model(model: nn.Module) -> nn.Module:
    """The plain module inside any number of DataParallel / DDP / ``torch.compile`` wrappers."""
    while (inner := _inner(model)) is not None:
        model = inner
    return model


@contextlib.contextmanager
def module_tree_restored(model: nn.Module) -> Iterator[nn.Module]:
    """Put every child module back in place on exit, whatever was swapped in (and even on exceptions)."""
    children = [(parent, name, child) for parent in model.modules() for name, child in parent._modules.items()]
    try:
        yield model
    finally:
        for parent, name, child in children:
            if parent._modules.get(name) is not child:
                parent._modules[name] = child


@contextlib.contextmanager
def unwrapped_children(model: nn.Module) -> Iterator[nn.Module]:
    """Run wrapped *submodules* as their plain modules for the duration of the block.

    An explanation hooks a layer inside the wrapper: DataParallel would run it in per-GPU replicas (the hook would
    see one replica), DDP would expect a synchronised backward and ``torch.compile`` may not honour new hooks. The
    tree is put back on exit, whatever happens.
    """
    with module_tree_restored(model):
        for parent in list(model.modules()):
            for name, child in list(parent._modules.items()):
                if child is not None and _inner(child) is not None:
                    parent._modules[name] = unwrap_model(child)
        yield model


def layer_not_called_error(name: str, layer: nn.Module) -> ValueError:
    """The error for a target layer that the model's forward never runs (defined but unused, or skipped)."""
    return ValueError(
        f"target_layer {name!r} ({type(layer).__name__}) was not called during the model's forward pass, so it has no "
        "activation to explain: choose a layer the forward runs (see exaug.explainers.find_default_cam_layer)"
    )


@contextlib.contextmanager
def layer_called(model: nn.Module, layer: nn.Module, name: str) -> Iterator[None]:
    """Require that ``layer`` runs whenever ``model`` runs inside the block, else raise :func:`layer_not_called_error`.

    Libraries fail in their own ways on a layer that never runs (an empty activation list, an ``IndexError``, a
    missing gradient): an error raised in the block after the model ran but not the layer is replaced by the clear
    one (the original is chained); errors raised before any forward pass propagate unchanged. The counting hooks are
    removed on exit.
    """
    calls = {"model": 0, "layer": 0}

    def counter(key: str) -> Callable[..., None]:
        def count(module: nn.Module, inputs: Any, output: Any) -> None:
            calls[key] += 1

        return count

    handles = [model.register_forward_hook(counter("model")), layer.register_forward_hook(counter("layer"))]
    try:
        yield
    except Exception as error:
        if calls["model"] and not calls["layer"]:
            raise layer_not_called_error(name, layer) from error
        raise
    finally:
        for handle in handles:
            handle.remove()
    if calls["model"] and not calls["layer"]:
        raise layer_not_called_error(name, layer)


def layer_paths(model: nn.Module) -> dict[str, nn.Module]:
    """``{dotted path: module}`` where wrapper components (``module`` of DataParallel/DDP, ``_orig_mod``) are dropped,
    so paths read as if no wrapper were there (the wrapped path is also accepted)."""
    paths: dict[str, nn.Module] = {}

    def visit(module: nn.Module, prefix: str) -> None:
        paths.setdefault(prefix, module)
        inner = _inner(module)
        if inner is not None:
            visit(inner, prefix)  # same logical path as its wrapper
            return
        for name, child in module._modules.items():
            if child is not None:
                visit(child, f"{prefix}.{name}" if prefix else name)

    visit(model, "")
    # Logical paths name the innermost module (a path to a wrapper means its wrapped module).
    for name, module in list(paths.items()):
        paths[name] = unwrap_model(module)
    for name, module in model.named_modules():
        paths.setdefault(name, module)
    return paths


def resolve_layer(model: nn.Module, layer: str | nn.Module) -> tuple[str, nn.Module]:
    """Find a submodule by dotted path (``"encoder.layer2.3.conv3"``, integer parts index sequences) or identity.

    Paths are read through wrappers (see :func:`layer_paths`).

    Returns:
        ``(name, module)`` where ``name`` is the wrapper-free dotted path inside ``model``.

    Raises:
        ValueError: the path does not exist or the module is not part of ``model``.
    """
    paths = layer_paths(model)
    if isinstance(layer, nn.Module):
        for name, module in paths.items():
            if module is layer or (_inner(layer) is not None and module is unwrap_model(layer)):
                return name, module
        raise ValueError("target_layer is a module that is not part of the model")
    if not isinstance(layer, str):
        raise TypeError(f"target_layer must be a dotted module path or an nn.Module, got {type(layer).__name__}")
    if layer in paths:
        logical = next(name for name, module in paths.items() if module is paths[layer])
        return logical, paths[layer]
    candidates = [n for n in paths if n]
    close = difflib.get_close_matches(layer, candidates, n=3)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    raise ValueError(f"target_layer {layer!r} is not a submodule of the model.{hint}")


# -- default layers ------------------------------------------------------------------------------------------------


def _is_attention(module: nn.Module) -> bool:
    return isinstance(module, nn.MultiheadAttention) or "attention" in type(module).__name__.lower()


def _is_norm(module: nn.Module) -> bool:
    return isinstance(module, (nn.LayerNorm, nn.GroupNorm)) or "norm" in type(module).__name__.lower()


def _excluded(name: str) -> bool:
    return any(part in _EXCLUDED_PARTS for part in name.split("."))


def find_default_cam_layer(model: nn.Module, images: Tensor,
                           reshape_transform: Optional[ReshapeTransform] = None, layout: str = "auto") -> str:
    """The default CAM layer of ``model`` (a wrapper-free dotted path).

    Runs one no-grad forward on ``images[:1]`` with temporary hooks (removed before returning).

    * Transformers (a module that is an attention layer): the first normalisation layer of the last attention
      block, run before its attention (``blocks[-1].norm1`` in timm, ``encoder.layers[-1].ln_1`` in torchvision),
      the pytorch-grad-cam recommendation: later token outputs get no gradient from the class token.
    * Otherwise (CNNs): the last module whose output is a feature map with more than one position. For a ResNet
      this is the last stage (``layer4``), unless its output is 1x1 (a 32x32 input without a CIFAR stem); then an
      earlier stage with a real spatial extent is chosen, because the Grad-CAM of a 1x1 map is constant.

    Never chosen: attention internals (``attn.*``, ``q_norm``, ``k_norm``), patch embeddings (``patch_embed``,
    ``conv_proj``), 1x1 maps, outputs that are not a feature map or token grid.

    Raises:
        ValueError: no layer qualifies; the message lists candidate layers with their output shapes.
    """
    check_layout(layout)
    plain = unwrap_model(model)
    logical = {id(module): name for name, module in reversed(list(layer_paths(plain).items()))}
    started: list[str] = []
    finished: list[tuple[str, tuple[int, ...], bool]] = []
    kinds: dict[str, str | None] = {}
    size = (images.shape[-2], images.shape[-1])
    seen_attention: list[str] = []

    def make_hooks(name: str, module: nn.Module):
        def pre(mod: nn.Module, inputs: Any) -> None:
            started.append(name)
            if _is_attention(mod):
                seen_attention.append(name)

        def post(mod: nn.Module, inputs: Any, output: Any) -> None:
            try:
                output = layer_tensor(output)
            except TypeError:
                return
            try:
                fmap = to_feature_map(output, reshape_transform, layout=layout, image_size=size)
                usable = feature_map_layout(output.shape, size, layout) is not None or reshape_transform is not None
                usable = usable and fmap.shape[-1] * fmap.shape[-2] > 1
            except (ValueError, RuntimeError, TypeError, IndexError):
                usable = False
            finished.append((name, tuple(output.shape), usable and not _excluded(name)))
            kinds[name] = feature_map_layout(output.shape, size, layout)

        return pre, post

    handles = []
    for module in plain.modules():
        name = logical.get(id(module), "")
        if not name:
            continue
        pre, post = make_hooks(name, module)
        handles += [module.register_forward_pre_hook(pre), module.register_forward_hook(post)]
    try:
        with isolated(plain), unwrapped_children(plain), torch.no_grad():
            plain(images[:1])
    finally:
        for handle in handles:
            handle.remove()
    usable = {name for name, _, ok in finished if ok}
    if seen_attention:
        last = seen_attention[-1]
        while (outer := last.rpartition(".")[0]) in seen_attention:
            # Nested attention modules (transformers 4: ViTAttention holds ViTSelfAttention): the block's norm is
            # a sibling of the outermost one.
            last = outer
        block = last.rpartition(".")[0]
        modules = layer_paths(plain)
        order = started.index(last) if last in started else len(started)
        for name in started[:order]:
            # Only token / channels-last norms: a CNN with an attention-like module (CBAM, SE) keeps the CNN rule.
            transformer_norm = kinds.get(name) in ("tokens", "nhwc") or reshape_transform is not None
            if name.startswith(block + ".") and name in usable and _is_norm(modules[name]) and transformer_norm:
                if name.count(".") == last.count("."):  # a sibling of the attention, not a nested norm
                    return name
    for name, _, ok in reversed(finished):
        if ok:
            # Forward hooks fire when a module *finishes*, so the last entry is the outermost module that ends last.
            return name
    listing = "; ".join(f"{name} {shape}" for name, shape, _ in finished[-12:])
    raise ValueError(
        "could not find a default target_layer: no layer outputs a feature map (B, C, h, w), (B, h, w, C) or a token "
        f"grid (B, N, C) with more than one position outside attention internals and patch embeddings. Last layers "
        f"and their output shapes: {listing}. Pass target_layer (and reshape_transform if needed) explicitly"
    )
