"""What a training checkpoint holds and how a run is restored from it: RNG states as tensors, validation,
option changes on resume.

A checkpoint must load with ``torch.load(..., weights_only=True)`` (see :mod:`exaug.utils.checkpoint`), so it
holds tensors, plain containers, numbers and strings only: NumPy's and Python's RNG states are converted to
tensors here and back on resume (:func:`rng_state`, :func:`set_rng_state`). :func:`validate_checkpoint` checks
the structure of a loaded checkpoint before anything is restored, and :func:`config_changes` lists the options
of a resumed run that differ from the checkpoint's. :func:`resume_training` continues a run from its own
``last.pt``; :func:`branch_training` starts a new run (a branch) from another run's, through the same
:func:`restore_state`.
"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np
import torch
from torch import Tensor

from .. import __version__
from ..utils.checkpoint import CheckpointError, load_checkpoint
from .methods import get_method

if TYPE_CHECKING:  # the trainer imports this module
    from .trainer import Trainer

__all__ = ["BRANCH_FIXED_OPTIONS", "CHECKPOINT_KEYS", "NEUTRAL_OPTIONS", "OptionChange", "accepted_changes",
           "apply_current_options", "apply_optimizer_options", "branch_training", "config_changes", "describe_changes",
           "restore_state", "resume_training", "rng_state", "set_rng_state", "training_state", "validate_checkpoint"]

#: Keys every ``last.pt`` / ``best.pt`` holds (checked on resume and by :func:`~exaug.training.load_run`).
CHECKPOINT_KEYS = ("config", "epoch", "model", "classifier", "optimizers", "schedulers")

#: Options that do not change what a run computes (where it runs, how it logs, where the data lives): a resume
#: may change them freely. Every other option changes the run's meaning and needs ``--allow-changes``.
NEUTRAL_OPTIONS = frozenset({
    "out", "resume", "quiet", "tensorboard", "workers", "device", "compile", "channels_last", "data_root",
    "download", "skip_bad_images", "threads", "saliency_cache_device", "logger", "stop_after",
})

#: Options a branch (``init_from``) must share with its warm-up: the networks, the data and its order.
BRANCH_FIXED_OPTIONS = ("model", "width", "head", "feat_dim", "image_size", "dataset", "train_samples",
                        "eval_samples", "val_fraction", "batch_size", "seed")

#: ``{"option": name, "old": value, "new": value, "epoch": first epoch run with the new value}``.
OptionChange = dict


def rng_state() -> dict[str, Any]:
    """The global RNG states of torch, CUDA, NumPy and Python, as tensors and numbers only.

    Example:
        >>> import random
        >>> from exaug.training.state import rng_state, set_rng_state
        >>> state = rng_state()
        >>> first = random.random()
        >>> set_rng_state(state)
        >>> random.random() == first
        True
    """
    np_kind, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    py_version, py_internal, py_gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        "numpy": {"kind": str(np_kind), "keys": torch.from_numpy(np_keys.astype(np.int64)), "pos": int(np_pos),
                  "has_gauss": int(np_has_gauss), "cached_gaussian": float(np_gauss)},
        # Python's Mersenne Twister state: 625 ints < 2**32, exact in int64.
        "python": {"version": int(py_version), "internal": torch.tensor(py_internal, dtype=torch.int64),
                   "gauss": py_gauss},
    }


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore what :func:`rng_state` returned (also the object form of checkpoints written before it)."""
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    numpy_state, python_state = state["numpy"], state["python"]
    if isinstance(numpy_state, Mapping):
        keys = numpy_state["keys"].numpy().astype(np.uint32)
        numpy_state = (numpy_state["kind"], keys, numpy_state["pos"], numpy_state["has_gauss"],
                       numpy_state["cached_gaussian"])
    np.random.set_state(numpy_state)
    if isinstance(python_state, Mapping):
        internal = tuple(int(v) for v in python_state["internal"].tolist())
        python_state = (python_state["version"], internal, python_state["gauss"])
    random.setstate(python_state)


def _tensor_dict(value: Any) -> bool:
    return isinstance(value, Mapping) and all(isinstance(v, Tensor) for v in value.values())


def validate_checkpoint(state: Mapping[str, Any], path: str | Path, total_epochs: int | None = None) -> None:
    """Check the structure of a loaded training checkpoint before anything is restored from it.

    Args:
        state: what :func:`~exaug.utils.checkpoint.load_checkpoint` returned.
        path: the file, for the messages.
        total_epochs: the run's number of epochs; ``epoch`` (the next epoch to run) must lie in
            ``[0, total_epochs]``. ``None``: only ``epoch >= 0`` is checked.

    Raises:
        CheckpointError: one line naming ``path`` and the first problem found.
    """
    where = f"checkpoint {str(path)!r}"
    if not isinstance(state.get("config"), Mapping):
        raise CheckpointError(f"{where}: 'config' is a {type(state.get('config')).__name__}, not a mapping of options")
    epoch = state.get("epoch")
    if isinstance(epoch, bool) or not isinstance(epoch, int):
        raise CheckpointError(f"{where}: 'epoch' is {epoch!r}, not an integer")
    if epoch < 0 or (total_epochs is not None and epoch > total_epochs):
        span = f"[0, {total_epochs}]" if total_epochs is not None else ">= 0"
        raise CheckpointError(f"{where}: 'epoch' (epochs completed) is {epoch}, outside {span} for this run")
    for key in ("model", "classifier"):
        if not _tensor_dict(state.get(key)) or not state[key]:
            raise CheckpointError(f"{where}: {key!r} is not a state_dict (a non-empty mapping of tensors)")
    for key in ("optimizers", "schedulers"):
        part = state.get(key)
        if not (isinstance(part, Mapping) and all(isinstance(part.get(k), Mapping) for k in ("encoder", "classifier"))):
            raise CheckpointError(f"{where}: {key!r} must map 'encoder' and 'classifier' to state dicts")
    best = state.get("best_val", -1.0)
    if isinstance(best, bool) or not isinstance(best, (int, float)):
        raise CheckpointError(f"{where}: 'best_val' is {best!r}, not a number")
    history = state.get("history", [])
    if not isinstance(history, list) or not all(isinstance(row, Mapping) for row in history):
        raise CheckpointError(f"{where}: 'history' is not a list of metric rows")
    rng = state.get("rng")
    if rng is not None and not (isinstance(rng, Mapping) and isinstance(rng.get("torch"), Tensor)):
        raise CheckpointError(f"{where}: 'rng' does not hold the RNG states")


def config_changes(saved: Mapping[str, Any], current: Mapping[str, Any], epoch: int) -> list[OptionChange]:
    """The options of ``current`` whose value differs from the checkpoint's ``saved`` config, except
    :data:`NEUTRAL_OPTIONS`; ``epoch`` is the first epoch run with the new values.

    An option missing from ``saved`` (added to exaug after the checkpoint was written) is not compared.

    Example:
        >>> from exaug.training.state import config_changes
        >>> config_changes({"lr": 0.5, "out": "a"}, {"lr": 0.1, "out": "b"}, epoch=3)
        [{'option': 'lr', 'old': 0.5, 'new': 0.1, 'epoch': 3}]
    """
    return [{"option": key, "old": saved.get(key), "new": value, "epoch": epoch}
            for key, value in current.items()
            if key not in NEUTRAL_OPTIONS and key in saved and saved[key] != value]


def describe_changes(changes: list[OptionChange]) -> str:
    """``"lr 0.5 -> 0.1, seed 0 -> 1"``."""
    return ", ".join(f"{c['option']} {c['old']!r} -> {c['new']!r}" for c in changes)


def apply_optimizer_options(
    optimizer: torch.optim.Optimizer, scheduler: torch.optim.lr_scheduler.LambdaLR, lr: float, **group_options: Any
) -> None:
    """Make a restored optimizer and its ``LambdaLR`` follow the current options (``--allow-changes``).

    ``load_state_dict`` restores the checkpoint's learning rates and ``base_lrs``, so a new ``--lr`` would be
    silently ignored: this sets the base learning rate to ``lr``, the current one to ``lr`` times the schedule's
    factor at the scheduler's epoch (the schedule may have a new horizon too), and ``group_options`` (e.g.
    ``momentum``, ``weight_decay``) on every param group.

    Example:
        >>> import torch
        >>> from exaug.training.state import apply_optimizer_options
        >>> net = torch.nn.Linear(2, 1)
        >>> opt = torch.optim.SGD(net.parameters(), lr=0.5)
        >>> sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda e: 0.5 ** e)
        >>> opt.step(); sched.step()
        >>> apply_optimizer_options(opt, sched, 0.1, momentum=0.9)
        >>> opt.param_groups[0]["lr"], opt.param_groups[0]["momentum"], sched.base_lrs
        (0.05, 0.9, [0.1])
    """
    scheduler.base_lrs = [lr for _ in scheduler.base_lrs]
    for group, factor in zip(optimizer.param_groups, scheduler.lr_lambdas):
        group["initial_lr"] = lr
        group["lr"] = lr * factor(scheduler.last_epoch)
        group.update({k: v for k, v in group_options.items() if k in group})


def training_state(trainer: "Trainer", next_epoch: int) -> dict[str, Any]:
    """Everything a checkpoint of ``trainer`` holds (the one place it is assembled; :func:`resume_training`
    restores it): tensors, plain containers, numbers and strings only, so that it loads with
    ``weights_only=True``."""
    t = trainer
    return {
        "exaug_version": __version__,
        "config": t.config.to_dict(),
        "epoch": next_epoch,
        "best_val": t.best_val,
        "model": t.model.state_dict(),
        "classifier": t.classifier.state_dict(),
        "optimizers": {"encoder": t.encoder_optimizer.state_dict(), "classifier": t.classifier_optimizer.state_dict()},
        "schedulers": {"encoder": t.encoder_scheduler.state_dict(), "classifier": t.classifier_scheduler.state_dict()},
        "scaler": t.scaler.state_dict(),
        "method_state": t.method.state_dict(),
        # The saliency cache's buffers; none under torchrun, where every rank holds its own cache.
        "saliency_cache": t.saliency_cache.state_dict() if t.saliency_cache is not None and not t.ctx.enabled
        else None,
        "rng": rng_state(),
        "history": t.history,
        "changes": t.changes,
        "branched_from": t.branched_from,
    }


def resume_training(trainer: "Trainer") -> list[OptionChange]:
    """Load, validate and restore ``<out>/last.pt`` into ``trainer``; returns the options this resume changed.

    Nothing is written: the trainer writes ``config.json`` only after this returns. Without ``last.pt``, a
    folder whose run never finished an epoch (only ``config.json``) starts again from epoch 0.

    Raises:
        CheckpointError: one line naming the file and what is wrong (missing, corrupt, unsafe, foreign, epoch
            out of range, options changed without ``allow_changes``), ending with "Nothing was overwritten.".
    """
    t = trainer
    path = t.out / "last.pt"
    if not path.is_file():
        return _resume_unstarted(t, path)
    try:
        state = load_checkpoint(path, required_keys=CHECKPOINT_KEYS, trust=t.trust_checkpoint or None)
        validate_checkpoint(state, path, t.total_epochs)
    except CheckpointError as err:
        raise CheckpointError(f"cannot --resume: {err}. Nothing was overwritten.") from err
    start_epoch = int(state["epoch"])
    changes = accepted_changes(t, state["config"], path, start_epoch)
    restore_state(t, state, path, "--resume", method_state=True)
    if changes:
        apply_current_options(t)
    t.start_epoch = start_epoch
    t.best_val = float(state.get("best_val", -1.0))
    t.history = list(state.get("history", []))
    t.changes = [*state.get("changes", []), *changes]
    t.branched_from = state.get("branched_from")
    return changes


def restore_state(t: "Trainer", state: Mapping[str, Any], path: Path, flag: str, *, method_state: bool) -> None:
    """Load a validated checkpoint's networks, optimisers, schedules, AMP scaler, saliency cache and RNG states
    into ``t`` (the part resume and branching share); ``method_state``: also the method's own state.

    Raises:
        CheckpointError: the checkpoint does not fit the trainer's networks or optimisers (``flag`` names the
            option that loaded it).
    """
    try:
        t.model.load_state_dict(state["model"])
        t.classifier.load_state_dict(state["classifier"])
        t.encoder_optimizer.load_state_dict(state["optimizers"]["encoder"])
        t.classifier_optimizer.load_state_dict(state["optimizers"]["classifier"])
        t.encoder_scheduler.load_state_dict(state["schedulers"]["encoder"])
        t.classifier_scheduler.load_state_dict(state["schedulers"]["classifier"])
        t.scaler.load_state_dict(state.get("scaler") or {})
        if method_state:  # absent from checkpoints written before methods were plugins (their methods kept none)
            t.method.load_state_dict(state.get("method_state", {}))
        cache_state = state.get("saliency_cache")  # absent before the cache was checkpointed
        if t.saliency_cache is not None and cache_state is not None and not t.ctx.enabled:
            t.saliency_cache.load_state_dict(cache_state)
        set_rng_state(state["rng"])
    except (RuntimeError, KeyError, ValueError, TypeError, IndexError) as err:
        text = " ".join(str(err).split())[:300]
        raise CheckpointError(f"cannot {flag}: checkpoint {str(path)!r} does not fit this run "
                              f"({type(err).__name__}: {text}). Nothing was overwritten.") from err


def apply_current_options(t: "Trainer") -> None:
    """Make the restored optimisers follow the run's current options and schedule horizon
    (:func:`apply_optimizer_options` on both)."""
    c = t.config
    apply_optimizer_options(t.encoder_optimizer, t.encoder_scheduler, c.lr, momentum=c.momentum,
                            weight_decay=c.weight_decay)
    apply_optimizer_options(t.classifier_optimizer, t.classifier_scheduler, c.classifier_lr, momentum=c.momentum)


def branch_training(trainer: "Trainer") -> list[OptionChange]:
    """Start ``trainer`` where another run's checkpoint (``config.init_from``) left off: a branch.

    Restores what :func:`resume_training` restores (networks, optimisers, schedule position, epoch counter, AMP
    scaler, RNG states; the method's own state only when the method is the same), so a branch with the warm-up's
    method and options equals continuing the warm-up. The method and its options may differ within the
    warm-up's family (contrastive ``supcon`` -> ``excon`` / ``exconb``; joint ``ce`` -> ``edda``): the optimisers
    then follow the branch's options and schedule horizon (as a resume with changes). The branch's history and
    best validation start empty. The checkpoint is only read; its resolved path, SHA-256, epoch, method and the
    options that differ are kept in ``trainer.branched_from`` (``config.json`` / ``summary.json``
    ``resolved.branched_from``). Returns ``[]``: nothing changed within the branch itself.

    Raises:
        CheckpointError: the checkpoint is missing, corrupt, unsafe, of another method family, from a run with
            another model / data / batch size / seed (naming the option), or does not fit the networks.
    """
    t = trainer
    given = Path(str(t.config.init_from))
    path = given / "last.pt" if given.is_dir() else given
    try:
        state = load_checkpoint(path, required_keys=CHECKPOINT_KEYS, trust=t.trust_checkpoint or None)
        validate_checkpoint(state, path, t.total_epochs)
    except CheckpointError as err:
        raise CheckpointError(f"cannot --init-from: {err}. Nothing was written.") from err
    saved, current = state["config"], t.config.to_dict()
    for option in BRANCH_FIXED_OPTIONS:
        if option in saved and saved[option] != current[option]:
            raise CheckpointError(
                f"cannot --init-from {str(path)!r}: option {option!r} is {current[option]!r} here but "
                f"{saved[option]!r} in the warm-up; a branch keeps the warm-up's {', '.join(BRANCH_FIXED_OPTIONS)}. "
                "Nothing was written.")
    _check_same_family(str(saved.get("method")), t.config.method, path)
    start_epoch = int(state["epoch"])
    same_method = saved.get("method") == t.config.method
    restore_state(t, state, path, "--init-from", method_state=same_method)
    apply_current_options(t)  # the branch's lr / horizon; bit for bit the restored values when unchanged
    t.start_epoch = start_epoch
    t.branched_from = {
        "path": str(path.resolve()), "sha256": _sha256(path), "epoch": start_epoch, "method": saved.get("method"),
        "changes": [c for c in config_changes(saved, current, start_epoch) if c["option"] != "init_from"],
    }
    return []


def _check_same_family(saved_method: str, method: str, path: Path) -> None:
    """A branch's optimiser must train the same parameters as the warm-up's (its state is restored)."""
    try:
        joint = get_method(saved_method).joint
    except ValueError as err:
        raise CheckpointError(f"cannot --init-from {str(path)!r}: its method is unknown here ({err})") from err
    if joint != get_method(method).joint:
        family = {True: "joint (ce, edda, ...)", False: "contrastive (supcon, excon, exconb, ...)"}
        raise CheckpointError(
            f"cannot --init-from {str(path)!r}: method {method!r} is {family[not joint]} but the warm-up's "
            f"{saved_method!r} is {family[joint]}; their optimisers train different parameters. Nothing was written.")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _resume_unstarted(t: "Trainer", path: Path) -> list[OptionChange]:
    saved_json = t.out / "config.json"
    if not saved_json.is_file():
        raise CheckpointError(f"cannot --resume: no checkpoint at {str(path)!r} and no run in {str(t.out)!r}. "
                              "Nothing was overwritten.")
    try:
        saved = json.loads(saved_json.read_text())
    except ValueError as err:
        raise CheckpointError(f"cannot --resume: {str(saved_json)!r} is not JSON ({err}). "
                              "Nothing was overwritten.") from err
    changes = accepted_changes(t, saved if isinstance(saved, dict) else {}, saved_json, 0)
    # A branch that never finished an epoch starts again from its warm-up.
    return branch_training(t) if t.config.init_from else changes


def accepted_changes(trainer: "Trainer", saved: Mapping[str, Any], path: Path, start_epoch: int) -> list[OptionChange]:
    """The options of ``trainer.config`` that differ from the checkpoint's ``saved`` config, if this resume may
    make them; else ``CheckpointError`` listing the differences.

    A longer ``epochs`` is allowed while the checkpoint is within the first ``epochs`` epochs (the cosine
    schedules are then recomputed over the new horizon: see docs/training.md); any other change needs
    ``trainer.allow_changes``. (Fewer epochs than the checkpoint completed are refused earlier, by
    :func:`validate_checkpoint`.)
    """
    t = trainer
    changes = config_changes(saved, t.config.to_dict(), start_epoch)
    old_epochs = saved.get("epochs")
    extension = isinstance(old_epochs, int) and t.config.epochs > old_epochs and start_epoch <= old_epochs
    refused = [c for c in changes if not (c["option"] == "epochs" and extension)]
    if refused and not t.allow_changes:
        details = ", ".join(f"{c['option']}={c['old']!r} -> {c['new']!r}" for c in refused)
        raise CheckpointError(
            f"cannot --resume: {str(path)!r} was trained with other options ({details}); they change the run's "
            "meaning: pass --allow-changes (allow_changes=True) to apply and record them, or restore the original "
            "values. Nothing was overwritten."
        )
    return changes
