"""Fault injection through the trainer and the commands: hostile checkpoints, bad data, divergence, interrupted
and failing writes. Each test asserts the message and that nothing in the run folder was lost or overwritten."""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image

from exaug.cli import main
from exaug.data import BadImageError
from exaug.training import Trainer, TrainConfig, TrainingDiverged, load_run
from exaug.training.logger import read_metrics
from exaug.training.schedule import cosine_factor
from exaug.utils import checkpoint as checkpoint_module
from exaug.utils.checkpoint import CheckpointError, load_checkpoint

TINY: dict[str, Any] = dict(
    method="supcon", dataset="synthetic", model="resnet18", width=0.0625, feat_dim=16, epochs=1, batch_size=16,
    lr=0.05, classifier_lr=0.05, train_samples=32, eval_samples=16, quiet=True, device="cpu", seed=3,
)
TINY_ARGS = ["--method", "supcon", "--epochs", "1", "--dataset", "synthetic", "--model", "resnet18", "--width",
             "0.0625", "--feat-dim", "16", "--batch-size", "16", "--lr", "0.05", "--classifier-lr", "0.05",
             "--train-samples", "32", "--eval-samples", "16", "--quiet", "--device", "cpu", "--seed", "3"]


def tiny(out: Path, **overrides: Any) -> TrainConfig:
    return TrainConfig(**{**TINY, "out": str(out), **overrides})


def snapshot(folder: Path) -> dict[str, str]:
    """``{relative path: sha256}`` of every file under ``folder``: equal snapshots mean nothing was touched."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def one_error_line(capsys: pytest.CaptureFixture[str], command: str) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    lines = err.splitlines()
    assert lines and lines[-1].startswith(f"exaug {command}: error: "), err
    return lines[-1]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A genuine one-epoch run folder (copied by tests that change it)."""
    out = tmp_path_factory.mktemp("genuine") / "run"
    Trainer(tiny(out)).fit()
    return out


def copy_run(source: Path, dest: Path) -> Path:
    dest.mkdir(parents=True)
    for path in source.iterdir():
        if path.is_file():
            (dest / path.name).write_bytes(path.read_bytes())
    return dest


# -- 1. safe loading ------------------------------------------------------------------------------------------
class Payload:
    """Unpickling this creates ``marker`` (a stand-in for arbitrary code)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return open, (str(self.marker), "w")


def test_a_genuine_checkpoint_loads_with_weights_only(finished_run):
    for name in ("last.pt", "best.pt"):
        state = torch.load(finished_run / name, weights_only=True)
        assert state["epoch"] == 1 and isinstance(state["rng"]["numpy"]["keys"], torch.Tensor)
    assert load_run(finished_run).epoch == 1


def test_a_malicious_checkpoint_runs_through_no_load_path(finished_run, tmp_path, capsys):
    run = copy_run(finished_run, tmp_path / "run")
    marker = tmp_path / "payload-ran"
    genuine = torch.load(run / "last.pt", weights_only=True)
    for name in ("last.pt", "best.pt"):
        torch.save({**genuine, "extra": Payload(marker)}, run / name)
    before = snapshot(run)
    commands = [
        ("evaluate", ["evaluate", "--run", str(run), "--metrics", "accuracy", "--quiet"]),
        ("evaluate", ["evaluate", "--run", str(run), "--checkpoint", str(run / "last.pt"), "--metrics", "accuracy"]),
        ("train", ["train", *TINY_ARGS, "--epochs", "2", "--out", str(run), "--resume"]),
        ("explain", ["explain", "--run", str(run), "--index", "0", "--out", str(tmp_path / "png")]),
    ]
    for command, argv in commands:
        assert main(argv) == 1, argv
        line = one_error_line(capsys, command)
        assert "safe loading refuses" in line and "--trust-checkpoint" in line, line
    with pytest.raises(CheckpointError, match="trust=True"):
        load_run(run)
    assert not marker.exists()
    assert snapshot(run) == before and not (run / "eval").exists()
    # The explicit opt-in loads it (and so runs the payload: the reason it is opt-in).
    assert load_run(run, trust=True).epoch == 1 and marker.exists()


def test_a_legacy_checkpoint_loads_and_resumes_with_trust_checkpoint(finished_run, tmp_path):
    """Checkpoints written before safe loading held NumPy's RNG state as an array: refused by default, resumed
    with the opt-in (evaluate, explain, resume), and the resumed run rewrites last.pt in the safe format."""
    import numpy as np
    import random

    run = copy_run(finished_run, tmp_path / "run")
    state = torch.load(run / "last.pt", weights_only=True)
    state["rng"] = {"torch": state["rng"]["torch"], "cuda": None, "numpy": np.random.get_state(),
                    "python": random.getstate()}
    torch.save(state, run / "last.pt")
    (run / "best.pt").unlink()
    with pytest.raises(CheckpointError, match="--trust-checkpoint"):
        Trainer(tiny(run, epochs=2, resume=True)).fit()
    evaluate = ["evaluate", "--run", str(run), "--metrics", "accuracy", "--quiet", "--out", str(tmp_path / "eval")]
    assert main(evaluate) == 1
    assert main([*evaluate, "--trust-checkpoint"]) == 0
    explain = ["explain", "--run", str(run), "--index", "0", "--out", str(tmp_path / "png")]
    assert main(explain) == 1
    assert main([*explain, "--trust-checkpoint"]) == 0 and list((tmp_path / "png").iterdir())
    summary = Trainer(tiny(run, epochs=2, resume=True), trust_checkpoint=True).fit()
    assert summary["status"] == "finished" and summary["epochs_completed"] == 2
    assert torch.load(run / "last.pt", weights_only=True)["epoch"] == 2


# -- 5. corrupt and foreign checkpoints -------------------------------------------------------------------------
def _foreign_states(genuine: dict[str, Any], tmp_path: Path) -> dict[str, Any]:
    other = TrainConfig(**{**TINY, "width": 0.125, "out": str(tmp_path / "other")})
    other_state = Trainer(other).model.state_dict()
    return {
        "a dict without keys": {"hello": 1},
        "wrong types": {**genuine, "model": "weights", "epoch": "1"},
        "epoch=-5": {**genuine, "epoch": -5},
        "epoch=99": {**genuine, "epoch": 99},
        "another model's state_dict": {**genuine, "model": other_state},
        "a list": [1, 2, 3],
    }


@pytest.mark.parametrize("kind", ["truncated", "random bytes", "empty", "a dict without keys", "wrong types",
                                  "epoch=-5", "epoch=99", "another model's state_dict", "a list"])
def test_corrupt_or_foreign_checkpoints_are_one_line_errors_and_touch_nothing(kind, finished_run, tmp_path, capsys):
    run = copy_run(finished_run, tmp_path / "run")
    genuine = torch.load(run / "last.pt", weights_only=True)
    raw = (run / "last.pt").read_bytes()
    if kind == "truncated":
        (run / "last.pt").write_bytes(raw[: len(raw) // 2])
    elif kind == "random bytes":
        (run / "last.pt").write_bytes(os.urandom(4096))
    elif kind == "empty":
        (run / "last.pt").write_bytes(b"")
    else:
        torch.save(_foreign_states(genuine, tmp_path)[kind], run / "last.pt")
    (run / "best.pt").unlink()  # load_run and evaluate fall back to last.pt
    before = snapshot(run)
    assert main(["train", *TINY_ARGS, "--epochs", "2", "--out", str(run), "--resume"]) == 1
    line = one_error_line(capsys, "train")
    assert str(run / "last.pt") in line and "Nothing was overwritten" in line
    assert main(["evaluate", "--run", str(run), "--metrics", "accuracy", "--quiet"]) == 1
    assert str(run / "last.pt") in one_error_line(capsys, "evaluate")
    with pytest.raises(CheckpointError, match=str(run / "last.pt")):
        load_run(run)
    assert snapshot(run) == before  # config.json, metrics, summary untouched


# -- 2. resume honesty ------------------------------------------------------------------------------------------
def test_resume_with_changed_options_is_refused_then_applied_and_recorded(finished_run, tmp_path):
    run = copy_run(finished_run, tmp_path / "run")
    before = snapshot(run)
    changed = tiny(run, epochs=3, lr=0.2, batch_size=8, temperature=0.2, seed=4, resume=True)
    with pytest.raises(CheckpointError) as info:
        Trainer(changed).fit()
    message = str(info.value)
    for text in ("lr=0.05 -> 0.2", "batch_size=16 -> 8", "temperature=0.1 -> 0.2", "seed=3 -> 4", "--allow-changes"):
        assert text in message
    assert "epochs" not in message  # a longer run is allowed without --allow-changes
    assert snapshot(run) == before

    trainer = Trainer(changed, allow_changes=True)
    trainer.fit()
    config = json.loads((run / "config.json").read_text())
    recorded = {c["option"]: (c["old"], c["new"], c["epoch"]) for c in config["changes"]}
    assert recorded["lr"] == (0.05, 0.2, 1) and recorded["epochs"] == (1, 3, 1) and recorded["seed"] == (3, 4, 1)
    rows = read_metrics(run)
    assert [r["epoch"] for r in rows] == [0, 1, 2]
    assert "lr 0.05 -> 0.2" in rows[1]["changes"] and "changes" not in rows[0] and "changes" not in rows[2]
    # The new lr took effect on the new cosine horizon (not the optimizer state's old lr).
    assert rows[1]["lr"] == pytest.approx(0.2 * cosine_factor(1, 3, 0, 1e-3))
    assert rows[2]["lr"] == pytest.approx(0.2 * cosine_factor(2, 3, 0, 1e-3))
    assert trainer.data.contrastive.batch_size == 8
    assert torch.load(run / "last.pt", weights_only=True)["changes"] == config["changes"]


def test_resume_cannot_take_back_completed_epochs(tmp_path):
    out = tmp_path / "run"
    Trainer(tiny(out, epochs=2)).fit()
    before = snapshot(out)
    with pytest.raises(CheckpointError, match=r"epochs completed\) is 2, outside \[0, 1\]"):
        Trainer(tiny(out, epochs=1, resume=True), allow_changes=True).fit()
    assert snapshot(out) == before


# -- 3. data faults ---------------------------------------------------------------------------------------------
def png(color: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), color).save(buffer, format="PNG")
    return buffer.getvalue()


def truncated_jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (9, 90, 200)).save(buffer, format="JPEG")
    return buffer.getvalue()[:300]


def image_files(train_classes: str, test_classes: str, per_class: int = 12,
                bad: dict[str, bytes] | None = None) -> dict[str, bytes]:
    files = {}
    for split, classes in (("train", train_classes), ("test", test_classes)):
        for k, name in enumerate(classes):
            for i in range(per_class):
                files[f"{split}/{name}/{i:02d}.png"] = png((40 * k, 5 * i, 100))
    files.update(bad or {})
    return files


def write_data(root: Path, files: dict[str, bytes], as_zip: bool) -> Path:
    """The files as a folder tree under ``root``, or (``as_zip``) zipped into ``root.zip``."""
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return Path(shutil.make_archive(str(root), "zip", root)) if as_zip else root


def folder_config(data: Path, out: Path, as_zip: bool, **overrides: Any) -> TrainConfig:
    values = {**TINY, "dataset": "imagefolder-zip" if as_zip else "imagefolder", "data_root": str(data),
              "train_samples": None, "eval_samples": None, "image_size": 16, "batch_size": 8, "out": str(out)}
    return TrainConfig(**{**values, **overrides})


@pytest.mark.parametrize("as_zip", [False, True], ids=["folder", "zip"])
def test_a_class_only_in_test_stops_before_training_and_a_missing_one_keeps_labels(as_zip, tmp_path):
    data = write_data(tmp_path / "extra", image_files("ab", "abc"), as_zip)
    with pytest.raises(ValueError, match="'c'"):
        Trainer(folder_config(data, tmp_path / "out", as_zip))
    assert not (tmp_path / "out").exists()
    data = write_data(tmp_path / "missing", image_files("abc", "ac"), as_zip)
    trainer = Trainer(folder_config(data, tmp_path / "out2", as_zip))
    val = trainer.data.val.dataset
    assert [val.classes[t] for t in val.targets] == [s.split("/")[-2] for s, _ in val.samples]
    assert sorted(set(val.targets)) == [0, 2]  # class 'c' keeps the training label 2
    assert trainer.fit()["status"] == "finished"


@pytest.mark.parametrize("kind", ["corrupt", "truncated"])
@pytest.mark.parametrize("as_zip", [False, True], ids=["folder", "zip"])
def test_bad_images_fail_fast_are_skipped_on_request_and_found_by_check_data(kind, as_zip, tmp_path, capsys):
    bad_name = "train/a/00.png"
    good = png((1, 2, 3))
    bad = bytearray(good) if kind == "corrupt" else bytearray(truncated_jpeg())
    if kind == "corrupt":
        start = bad.find(b"IDAT") + 4
        bad[start:start + 8] = b"\xff" * 8
    data = write_data(tmp_path / "data", image_files("ab", "ab", bad={bad_name: bytes(bad)}), as_zip)
    out = tmp_path / "out"
    with pytest.raises(BadImageError, match=r"train/a/00\.png") as info:
        Trainer(folder_config(data, out, as_zip))  # the first-batch check, before any training
    assert "--skip-bad-images" in str(info.value)
    assert not out.exists()

    # A bad validation image anywhere (not only in the first batch) stops the run before its first epoch.
    late = write_data(tmp_path / "late", image_files("ab", "ab", bad={"test/b/11.png": bytes(bad)}), as_zip)
    with pytest.raises(BadImageError, match=r"test/b/11\.png"):
        Trainer(folder_config(late, tmp_path / "late-out", as_zip))
    assert not (tmp_path / "late-out").exists()

    with pytest.warns(UserWarning, match=r"00\.png"):
        summary = Trainer(folder_config(data, out, as_zip, skip_bad_images=True)).fit()
    assert summary["status"] == "finished"

    argv = ["train", "--dataset", "imagefolder-zip" if as_zip else "imagefolder", "--data-root", str(data),
            "--check-data", "--quiet"]
    assert main(argv) == 1
    report = capsys.readouterr().out
    assert "train/a/00.png" in report and "1 unreadable" in report
    (tmp_path / "clean").mkdir()
    clean = write_data(tmp_path / "clean" / "data", image_files("ab", "ab"), as_zip)
    assert main([*argv[:4], str(clean), "--check-data", "--quiet"]) == 0
    assert "0 unreadable" in capsys.readouterr().out


# -- 4. divergence ------------------------------------------------------------------------------------------------
def test_nan_embeddings_mid_epoch_stop_cleanly_and_keep_the_last_good_checkpoint(tmp_path, capsys):
    out = tmp_path / "run"
    trainer = Trainer(tiny(out, method="exconb", epochs=3))
    forward, calls = trainer.contrastive_forward, {"n": 0}

    def poisoned(images: torch.Tensor) -> torch.Tensor:
        calls["n"] += 1
        embeddings = forward(images)
        return embeddings * float("nan") if trainer._current_epoch == 1 and calls["n"] > 3 else embeddings

    trainer.contrastive_forward = poisoned
    with pytest.raises(TrainingDiverged, match=r"epoch 1, step 1 .*embeddings") as info:
        trainer.fit()
    assert f"{str(out / 'last.pt')!r} (after epoch 0)" in str(info.value)
    state = torch.load(out / "last.pt", weights_only=True)
    assert state["epoch"] == 1 and len(state["history"]) == 1
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "diverged" and summary["epochs_completed"] == 1


def test_a_diverged_epoch_end_is_never_checkpointed(tmp_path):
    """The last step leaves NaN weights (an update that blew up): the epoch is not written as last/best.pt."""
    out = tmp_path / "run"
    trainer = Trainer(tiny(out, epochs=2))
    validate = trainer.validate

    def validate_then_blow_up() -> dict[str, Any]:
        row = validate()
        if trainer._current_epoch == 1:
            next(trainer.model.parameters()).data.fill_(float("inf"))
        return {**row, "val_top1": 100.0}  # would be the best epoch

    trainer.validate = validate_then_blow_up
    with pytest.raises(TrainingDiverged, match="non-finite weights at the end of epoch 1"):
        trainer.fit()
    for name in ("last.pt", "best.pt"):
        assert torch.load(out / name, weights_only=True)["epoch"] == 1
    assert [r["epoch"] for r in read_metrics(out)] == [0]


def test_first_epoch_divergence_names_no_missing_file(tmp_path):
    out = tmp_path / "run"
    trainer = Trainer(tiny(out))
    trainer.contrastive_forward = lambda images: torch.full((images.shape[0], 16), float("nan"))
    with pytest.raises(TrainingDiverged, match="no checkpoint was written") as info:
        trainer.fit()
    assert "last.pt" not in str(info.value) and not (out / "last.pt").exists()


def test_huge_learning_rates_are_clean_errors(tmp_path, capsys):
    assert main(["train", *TINY_ARGS, "--lr", "1e40", "--out", str(tmp_path / "a")]) == 2
    assert "lr must be a finite number" in one_error_line(capsys, "train")
    assert main(["train", *TINY_ARGS, "--lr", "1e30", "--epochs", "2", "--out", str(tmp_path / "b")]) == 1
    assert "non-finite" in one_error_line(capsys, "train")


# -- 4. writes: kill between writes, stale temporaries, disk full, existing runs, read-only folders --------------
class Killed(BaseException):
    """A kill -9 stand-in: not an Exception, so nothing in the trainer handles it."""


def test_kill_between_the_best_and_last_writes_keeps_best_and_summary_consistent(tmp_path, monkeypatch):
    out = tmp_path / "run"
    trainer = Trainer(tiny(out, epochs=3))
    # Epoch 1 is the best and runs twice (killed, then resumed); epoch 2 is worse, so nothing rewrites best.pt
    # after the resume: with last.pt written first, summary.json would report 20 while best.pt held epoch 0.
    scores = iter([10.0, 20.0, 20.0, 5.0])
    validate = trainer.validate
    trainer.validate = lambda: {**validate(), "val_top1": next(scores)}
    writes: list[str] = []
    save = trainer_module_atomic_save = __import__("exaug.training.trainer", fromlist=["x"]).atomic_save

    def killing_save(obj: Any, path: Path) -> None:
        writes.append(Path(path).name)
        if obj["epoch"] == 2 and Path(path).name == "last.pt":
            raise Killed  # after best.pt of epoch 1 was written, before last.pt
        save(obj, path)

    monkeypatch.setattr("exaug.training.trainer.atomic_save", killing_save)
    with pytest.raises(Killed):
        trainer.fit()
    assert writes == ["best.pt", "last.pt", "best.pt", "last.pt"]
    assert torch.load(out / "best.pt", weights_only=True)["epoch"] == 2
    assert torch.load(out / "last.pt", weights_only=True)["epoch"] == 1
    monkeypatch.setattr("exaug.training.trainer.atomic_save", trainer_module_atomic_save)
    (out / ".last.pt.abc123.tmp").write_bytes(b"half a checkpoint")  # what a real kill leaves

    resumed = Trainer(tiny(out, epochs=3, resume=True))
    resumed.validate = lambda: {**validate(), "val_top1": next(scores)}
    summary = resumed.fit()
    assert not list(out.glob(".*.tmp"))
    best = torch.load(out / "best.pt", weights_only=True)
    assert summary["best_val_top1"] == best["best_val"] == 20.0
    assert best["epoch"] == summary["best_epoch"] + 1 == 2


def test_disk_full_is_one_line_and_keeps_the_previous_checkpoint(tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    assert main(["train", *TINY_ARGS, "--out", str(out)]) == 0
    capsys.readouterr()
    before = torch.load(out / "last.pt", weights_only=True)
    real_save = torch.save

    def full_disk(obj: Any, handle: Any) -> None:
        handle.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint_module.torch, "save", full_disk)
    assert main(["train", *TINY_ARGS, "--epochs", "2", "--out", str(out), "--resume"]) == 1
    line = one_error_line(capsys, "train")
    assert "No space left on device" in line and str(out) in line and "previous file is kept" in line
    monkeypatch.setattr(checkpoint_module.torch, "save", real_save)
    after = torch.load(out / "last.pt", weights_only=True)
    assert after["epoch"] == before["epoch"] == 1
    assert not list(out.glob(".*.tmp"))


def test_torch_zip_writer_failure_is_reported_as_a_failed_write(tmp_path, monkeypatch):
    def enforce_fail(obj: Any, handle: Any) -> None:
        raise RuntimeError("[enforce fail at inline_container.cc:626] . unexpected pos 64 vs 0")

    monkeypatch.setattr(checkpoint_module.torch, "save", enforce_fail)
    with pytest.raises(CheckpointError, match=r"cannot write checkpoint .*x\.pt.*disk full.*no file was written"):
        checkpoint_module.atomic_save({"a": 1}, tmp_path / "x.pt")


@pytest.mark.parametrize("present", ["config.json", "best.pt", "metrics.jsonl", "summary.json"])
def test_a_folder_holding_any_run_file_is_never_overwritten_without_resume(present, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / present).write_text("{}\n")
    before = snapshot(out)
    with pytest.raises(FileExistsError, match=rf"{present}.*--resume"):
        Trainer(tiny(out)).fit()
    assert snapshot(out) == before


def test_resume_of_a_run_killed_before_its_first_epoch_starts_it(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.json").write_text(json.dumps(tiny(out).to_dict()))
    assert Trainer(tiny(out, resume=True)).fit()["status"] == "finished"
    with pytest.raises(CheckpointError, match="no checkpoint at .* and no run"):
        Trainer(tiny(tmp_path / "empty", resume=True)).fit()


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0,
                    reason="root writes into read-only folders, so the fault cannot be produced")
def test_read_only_output_folder_is_a_one_line_error(finished_run, tmp_path, capsys):
    run = copy_run(finished_run, tmp_path / "run")
    before = snapshot(run)
    run.chmod(0o500)
    try:
        assert main(["train", *TINY_ARGS, "--epochs", "2", "--out", str(run), "--resume"]) == 1
        assert str(run) in one_error_line(capsys, "train")
    finally:
        run.chmod(0o700)
    assert snapshot(run) == before


def test_load_checkpoint_refuses_without_trust_and_the_context_opts_in(tmp_path):
    path = tmp_path / "legacy.pt"
    marker = tmp_path / "ran"
    torch.save({"epoch": 1, "x": Payload(marker)}, path)
    with pytest.raises(CheckpointError, match=r"legacy\.pt.*(io|builtins)\.open"):
        load_checkpoint(path)
    assert not marker.exists()
    with checkpoint_module.trusted_checkpoints():
        assert load_checkpoint(path)["epoch"] == 1
    assert marker.exists()
