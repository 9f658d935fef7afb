"""Every option of a training run, in one dataclass that the CLI, config files and Python share.

``exaug train --help`` is generated from the field metadata below, so the help text and the defaults cannot
drift apart. Precedence: dataclass defaults < ``--config file.yaml|json`` < flags given on the command line.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
from pathlib import Path
from typing import Any, Mapping

from ..transforms import CROP_SCALE
from ..utils.checks import positive_int
from .methods import METHODS, closest_hint, get_method, list_methods
from .trackers import TRACKERS

__all__ = ["METHODS", "TrainConfig", "add_config_arguments", "config_from_args", "load_config_file"]

_FLOAT32_MAX = 3.4028234663852886e38


def _field(default: Any, help: str, **kwargs: Any) -> Any:
    if isinstance(default, (dict, list)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata={"help": help, **kwargs})
    return dataclasses.field(default=default, metadata={"help": help, **kwargs})


@dataclasses.dataclass
class TrainConfig:
    """Options of one training run (defaults: the ExCon paper's CIFAR-100 recipe, NOTES §2)."""

    # what to train
    method: str = _field("exconb", f"training method: {', '.join(METHODS)} (the registered ones, see "
                                   "exaug.training.methods)")
    method_options: dict = _field({}, "options of a plugin method as a JSON object, e.g. '{\"smoothing\": 0.2}' "
                                      "(its TrainingMethod.options; the built-in methods take none)")
    dataset: str = _field("synthetic", "dataset name (synthetic, cifar10, cifar100, tinyimagenet, imagefolder, "
                                       "imagefolder-zip)")
    data_root: str | None = _field(None, "dataset folder (or zip file for imagefolder-zip)")
    dataset_options: dict = _field({}, "extra constructor options of the dataset as a JSON object, for every split "
                                        "(synthetic only), e.g. '{\"spurious\": true, \"spurious_strength\": 0.9}'")
    download: bool = _field(False, "download cifar10/cifar100 with torchvision when missing (needs internet)")
    model: str = _field("resnet50", "encoder: resnet18/34/50 (CIFAR stem) or tv:<torchvision model name>")
    width: float = _field(1.0, "channel width multiplier of the encoder (e.g. 0.25 for CPU smoke runs)")
    head: str = _field("mlp", "projection head: mlp (dim -> dim -> feat_dim) or linear", choices=("mlp", "linear"))
    feat_dim: int = _field(128, "projection dimension")
    image_size: int | None = _field(None, "image side in pixels (default: the dataset's native size)")
    # schedule
    epochs: int = _field(200, "encoder epochs (Algorithm 1: each followed by one classifier epoch)")
    classifier_epochs: int | None = _field(None, "classifier epochs after the encoder for supcon_ori "
                                                 "(default: --epochs)")
    batch_size: int = _field(256, "images per step (per process under torchrun)")
    lr: float = _field(0.5, "encoder learning rate (SGD, cosine decay to lr * lr_min_factor)")
    lr_min_factor: float = _field(1e-3, "final learning rate as a fraction of --lr")
    warmup_epochs: int = _field(0, "linear learning-rate warm-up epochs")
    momentum: float = _field(0.9, "SGD momentum")
    weight_decay: float = _field(1e-4, "SGD weight decay of the encoder")
    classifier_lr: float = _field(0.1, "learning rate of the linear classifier (SGD, cosine)")
    temperature: float = _field(0.1, "contrastive temperature t")
    base_temperature: float = _field(0.07, "the loss is scaled by t / base_temperature (SupContrast)")
    # explanation-driven augmentation
    exp_start_epoch: int = _field(0, "first epoch (0-based) that uses explanation masks (excon/exconb)")
    explainer: str = _field("gradcam", "saliency backend (see `exaug explainers`)")
    explainer_layer: str | None = _field(None, "dotted layer path for CAM explainers, relative to the classifier "
                                               "model (default: the paper's layer for the model and image size)")
    explainer_options: dict = _field({}, "extra options for the explainer (config file only)")
    explainer_preset: str = _field("exaug", "explainer settings: exaug (its own layer and ReLU Grad-CAM) or "
                                           "reference (the ExCon reference code's masks: signed Grad-CAM, "
                                           "relu=False, at its layer; needs --explainer gradcam; --explainer-layer "
                                           "and --option still override)", choices=("exaug", "reference"))
    mask_threshold: float = _field(0.5, "keep pixels whose normalised saliency exceeds this")
    keep_fraction: float | None = _field(None, "keep this fraction of the most salient pixels instead")
    mask_fill: str = _field("zero", "value of dropped pixels: zero, mean, blur, noise",
                            choices=("zero", "mean", "blur", "noise"))
    mask_target: str = _field("label", "explain the true label or the predicted class",
                              choices=("label", "predicted"))
    background_copies: str = _field("all", "ExConB: background rows count in every view (all) or once (one)",
                                    choices=("all", "one"))
    saliency_refresh_epochs: int = _field(1, "excon/exconb: recompute each training image's saliency map every N "
                                             "epochs and reuse it in between (maps up to N-1 epochs old, cached at "
                                             "the explainer's native resolution: see --saliency-cache-dtype and "
                                             "--saliency-cache-device); 1 explains every batch, as the paper")
    # saliency cache storage and CPU threads (speed)
    saliency_cache_device: str = _field("train", "where the saliency cache lives: train (the training device) or "
                                                 "cpu (host memory; with CUDA, read through pinned memory with "
                                                 "non-blocking copies)", choices=("train", "cpu"))
    saliency_cache_dtype: str = _field("float32", "storage of cached maps, kept at the explainer's native "
                                                  "resolution: float32 (served bit for bit as a fresh map), "
                                                  "float16, bfloat16 or uint8 (rounded; 2x / 2x / 4x smaller)",
                                       choices=("float32", "float16", "bfloat16", "uint8"))
    threads: int | None = _field(None, "CPU threads of torch (default: min(cores, 4), or OMP_NUM_THREADS when "
                                       "set; also `exaug --threads N COMMAND`)")
    # EDDA (method edda; also uses explainer, explainer_layer, explainer_options, mask_fill, mask_target)
    edda_start_epoch: int = _field(0, "first epoch (0-based) that mixes in EDDA occlusions (before: plain ce)")
    edda_ratio: float = _field(0.5, "fraction of each batch's images that get EDDA copies (each adds a salient- and "
                                    "a non-salient-occluded row to the batch)")
    edda_fraction: float = _field(0.2, "fraction of pixels occluded in each EDDA copy (top-k / bottom-k saliency)")
    edda_target: str = _field("soft", "target of salient-occluded copies: soft (confidence mix of one-hot and "
                                      "uniform), uniform, lower_confidence (model probability of the label scaled "
                                      "down, renormalised), exclude (not used)",
                              choices=("soft", "uniform", "lower_confidence", "exclude"))
    edda_policy: str = _field("explanation", "where to occlude: explanation (saliency) or random (the control)",
                              choices=("explanation", "random"))
    edda_confidence: float = _field(0.5, "weight of the one-hot label in the soft target")
    edda_confidence_scale: float = _field(0.5, "factor on the label probability in the lower_confidence target")
    # CGC (method cgc)
    cgc_lambda: float = _field(0.5, "weight of the contrastive Grad-CAM consistency loss")
    cgc_temperature: float = _field(0.5, "temperature of the CGC InfoNCE loss")
    cgc_layer: str | None = _field(None, "Grad-CAM layer of the CGC loss, dotted path in the classifier model "
                                         "(default: the encoder's last block, e.g. encoder.layer4.1)")
    cgc_unlabeled: bool = _field(False, "treat the augmented view as unlabeled: only the CGC term, no "
                                        "cross-entropy, is applied to it")
    # data
    val_fraction: float = _field(0.0, "hold out this fraction of train for validation (paper tuning: 0.2); "
                                      "0 validates on the test split")
    train_samples: int | None = _field(None, "use a seeded subset of this many training images")
    eval_samples: int | None = _field(None, "use a seeded subset of this many validation images")
    workers: int = _field(0, "DataLoader worker processes")
    views_on_device: bool = _field(False, "generate the random views on the training device with Kornia")
    view_crop_min: float = _field(CROP_SCALE[0], "smallest area of the random views' resized crop, as a fraction of the image "
                                       "(SupContrast: 0.2; larger keeps more of each image, for short runs)")
    view_colour: bool = _field(True, "colour jitter (p 0.8) and grayscale (p 0.2) in the random views "
                                     "(SupContrast: on)")
    # data faults (docs/data.md "Wiring into the trainer")
    skip_bad_images: bool = _field(False, "replace an unreadable image file by the next readable one (and warn) "
                                          "instead of stopping with an error naming it")
    # machinery
    device: str = _field("auto", "cpu, cuda, cuda:1, ... (auto: cuda when available)")
    seed: int = _field(0, "random seed (data order, augmentation, initialisation)")
    amp: str = _field("none", "autocast precision: none, bf16, fp16", choices=("none", "bf16", "fp16"))
    channels_last: bool = _field(False, "use the channels-last memory format")
    compile: bool = _field(False, "torch.compile the training forward")
    sync_bn: bool = _field(False, "SyncBatchNorm under torchrun")
    out: str = _field("runs/exaug", "output folder")
    resume: bool = _field(False, "continue from <out>/last.pt")
    init_from: str | None = _field(None, "branch from another run: its folder or .pt checkpoint (its last.pt) gives "
                                         "the weights, optimiser state, schedule position, epoch counter and RNG "
                                         "state; the method and its options may differ, the model, data, batch size "
                                         "and seed may not (docs/training.md, 'Branching from a warm-up')")
    stop_after: int | None = _field(None, "end this invocation after this many epochs (counted from epoch 0; the "
                                          "schedule still spans --epochs): a warm-up to branch from, or a run in "
                                          "pieces continued with --resume")
    quiet: bool = _field(False, "no progress bars (one line per epoch)")
    tensorboard: bool = _field(False, "also log to TensorBoard (if installed)")
    # experiment tracking (exaug.training.trackers)
    logger: str = _field("files", "experiment tracker next to metrics.jsonl / metrics.csv: files (none) or wandb "
                                  "(Weights & Biases: the same rows and the saliency grids; WANDB_MODE=offline "
                                  "works without a network)", choices=TRACKERS)

    def __post_init__(self) -> None:
        method = get_method(self.method)  # unknown names list the valid ones and the closest match
        positive = {"epochs": self.epochs, "batch_size": self.batch_size, "feat_dim": self.feat_dim,
                    "lr": self.lr, "temperature": self.temperature, "width": self.width}
        for name, value in positive.items():
            if not value > 0:
                raise ValueError(f"{name} must be positive, got {value}")
        for name in ("threads", "stop_after"):
            positive_int(name, getattr(self, name), allow_none=True)
        if self.init_from is not None and (not isinstance(self.init_from, str) or not self.init_from):
            raise ValueError(f"init_from must be the path of a run folder or checkpoint, got {self.init_from!r}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if not isinstance(self.view_crop_min, (int, float)) or not 0.0 < self.view_crop_min <= 1.0:
            raise ValueError(f"view_crop_min must be an area fraction in (0, 1], got {self.view_crop_min!r}")
        if not 0.0 <= self.mask_threshold <= 1.0:
            raise ValueError(f"mask_threshold must be in [0, 1], got {self.mask_threshold}")
        if self.keep_fraction is not None and not 0.0 < self.keep_fraction <= 1.0:
            raise ValueError(f"keep_fraction must be in (0, 1], got {self.keep_fraction}")
        # Finite optimiser settings within float32: SGD converts them to the parameters' dtype and a larger value
        # fails inside the optimiser with an overflow traceback (a huge finite lr diverges cleanly instead).
        for name in ("lr", "classifier_lr", "momentum", "weight_decay"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or abs(value) > _FLOAT32_MAX:
                raise ValueError(f"{name} must be a finite number of at most {_FLOAT32_MAX:.3g} (float32), got {value}")
        if not isinstance(self.dataset_options, dict):
            raise ValueError(f"dataset_options must be a mapping of option: value, got {self.dataset_options!r}")
        if self.dataset_options and self.dataset != "synthetic":
            raise ValueError(f"dataset_options are for the synthetic dataset only, got {sorted(self.dataset_options)} "
                             f"for {self.dataset!r}")
        owned = sorted({"split", "transform", "image_size", "num_samples"} & set(self.dataset_options))
        if owned:  # the run sets these itself (image_size, train_samples / eval_samples)
            raise ValueError(f"dataset_options cannot set {owned}: use the run's own options (image_size, "
                             "train_samples, eval_samples)")
        if not isinstance(self.method_options, dict):
            raise ValueError(f"method_options must be a mapping of option: value, got {self.method_options!r}")
        # Each method family checks the options it reads; all of them run, so a bad value fails whatever the
        # method (a config stays valid if its method is switched later).
        for name in list_methods():
            get_method(name).validate_config(self)
        method.check_method_options(self)
        if self.logger not in TRACKERS:
            raise ValueError(f"logger must be one of {', '.join(TRACKERS)}, got {self.logger!r}")

    @property
    def uses_explanations(self) -> bool:
        """The method masks training images with explanations (``excon``, ``exconb``)."""
        return get_method(self.method).uses_explanations

    @property
    def is_contrastive(self) -> bool:
        return not self.is_joint

    @property
    def is_joint(self) -> bool:
        """Encoder and classifier trained together by cross-entropy (``ce`` and its extensions)."""
        return get_method(self.method).joint

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "TrainConfig":
        """Build from a mapping; unknown keys raise with a suggestion."""
        names = [f.name for f in dataclasses.fields(cls)]
        normalised = {str(k).replace("-", "_"): v for k, v in values.items()}
        for key in normalised:
            if key not in names:
                raise ValueError(f"unknown config option {key!r}.{closest_hint(key, names)}")
        return cls(**normalised)


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a ``.json`` or ``.yaml``/``.yml`` file of options."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file {str(path)!r} does not exist")
    text = path.read_text()
    if path.suffix.lower() in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError as err:  # pragma: no cover - depends on the environment
            raise ImportError("reading YAML config files needs PyYAML: pip install pyyaml (or use JSON)") from err
        data = yaml.safe_load(text) or {}
    else:
        data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError(f"config file {str(path)!r} must hold a mapping of option: value")
    return data


def _parse_json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(f"not valid JSON ({err})") from err
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object such as '{{\"name\": 1}}', got {text!r}")
    return value


def _parse_optional(kind: type) -> Any:
    def parse(text: str) -> Any:
        return None if text.lower() in ("none", "null", "") else kind(text)

    parse.__name__ = kind.__name__
    return parse


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """Add one ``--flag`` per :class:`TrainConfig` field (defaults suppressed, so explicit flags are known)."""
    parser.add_argument("--config", help="YAML or JSON file of options; flags given here override it")
    for field in dataclasses.fields(TrainConfig):
        if field.name == "explainer_options":
            continue
        flag = "--" + field.name.replace("_", "-")
        # Mapping fields have a default_factory instead of a default.
        default = field.default_factory() if field.default is dataclasses.MISSING else field.default  # type: ignore
        help_text = f"{field.metadata['help']} (default: {default})"
        kwargs: dict[str, Any] = {"dest": field.name, "default": argparse.SUPPRESS, "help": help_text}
        if isinstance(default, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, **kwargs)
            continue
        if isinstance(default, dict):
            parser.add_argument(flag, type=_parse_json_object, **kwargs)
            continue
        kind = {int: int, float: float, str: str}[type(default)] if default is not None else None
        if kind is None:  # optional fields: the annotation names the type
            kind = int if "int" in str(field.type) else float if "float" in str(field.type) else str
            kwargs["type"] = _parse_optional(kind)
        else:
            kwargs["type"] = kind
        if "choices" in field.metadata:
            kwargs["choices"] = field.metadata["choices"]
        parser.add_argument(flag, **kwargs)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """Merge defaults, the ``--config`` file and explicit flags into a :class:`TrainConfig`."""
    values: dict[str, Any] = {}
    if getattr(args, "config", None):
        values.update(load_config_file(args.config))
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    values.update({k: v for k, v in vars(args).items() if k in names})
    return TrainConfig.from_dict(values)
