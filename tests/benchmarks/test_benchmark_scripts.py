"""The benchmark scripts: grid enumeration, resumability rules, and smoke runs of every script's small mode.

The scripts live in ``benchmarks/`` (not a package); they are imported from there and called through ``main(argv)``
with every output redirected into ``tmp_path``.
"""

from __future__ import annotations

import json
import sys
import zipfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import cifar10_cpu  # noqa: E402
import grid  # noqa: E402
import reproduce_cifar100 as reproduce  # noqa: E402


@pytest.fixture
def tiny_zip(tmp_path) -> Path:
    """A CIFAR-like ImageFolder zip: 3 classes, 12 train and 6 test 32x32 JPEGs each."""
    path = tmp_path / "tiny-cifar.zip"
    rng = np.random.default_rng(0)
    with zipfile.ZipFile(path, "w") as archive:
        for split, count in (("train", 12), ("test", 6)):
            for label, name in enumerate(("cat", "dog", "ship")):
                for i in range(count):
                    pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
                    pixels[..., label] = 255  # a class cue, so the labels are learnable at all
                    image = tmp_path / "img.jpg"
                    Image.fromarray(pixels).save(image)
                    archive.write(image, f"{split}/{name}/{i:03d}.jpg")
    return path


# -- reproduce_cifar100: the grid ------------------------------------------------------------------------------------
def test_list_enumerates_the_whole_paper_grid(tmp_path, capsys):
    runs = reproduce.main(["--list", "--out", str(tmp_path)])["runs"]
    # 4 methods x 2 batch sizes x 5 seeds on CIFAR-100, 4 methods x 5 seeds on Tiny ImageNet.
    assert len(runs) == 60
    assert capsys.readouterr().out.count("exaug train --method") == 60
    assert Counter(r.setting for r in runs) == {"cifar100-bs128": 20, "cifar100-bs256": 20, "tinyimagenet-bs128": 20}
    assert Counter(r.method for r in runs) == {m: 15 for m in ("supcon_ori", "supcon", "excon", "exconb")}
    assert len({r.folder for r in runs}) == 60
    for run in runs:
        c = run.config
        recipe = (c.model, c.width, c.epochs, c.lr, c.temperature, c.val_fraction)
        assert recipe == ("resnet50", 1.0, 200, 0.5, 0.1, 0.0)
        assert c.seed in range(5) and c.method == run.method
        dataset, batch, size = {"cifar100-bs128": ("cifar100", 128, 32), "cifar100-bs256": ("cifar100", 256, 32),
                                "tinyimagenet-bs128": ("tinyimagenet", 128, 64)}[run.setting]
        assert (c.dataset, c.batch_size, c.image_size) == (dataset, batch, size)
    starts = {(r.setting, r.method): r.config.exp_start_epoch for r in runs if r.config.uses_explanations}
    assert starts == {("cifar100-bs128", "excon"): 0, ("cifar100-bs256", "excon"): 100,
                      ("cifar100-bs128", "exconb"): 50, ("cifar100-bs256", "exconb"): 50,
                      ("tinyimagenet-bs128", "excon"): 0, ("tinyimagenet-bs128", "exconb"): 0}


def test_tuning_and_torchrun_variants(tmp_path):
    runs = reproduce.main(["--list", "--tuning", "--torchrun", "4", "--settings", "cifar100-bs256", "--seeds", "1",
                           "--out", str(tmp_path)])["runs"]
    assert len(runs) == 4
    for run in runs:
        assert run.config.val_fraction == 0.2 and run.config.batch_size == 64  # 256 split over 4 processes
        assert run.config.device == "cuda" and "/tuning/" in str(run.folder)
    command = grid.train_command("cfg.json", torchrun=4)
    assert command[:3] == ["torchrun", "--standalone", "--nproc_per_node=4"]
    assert command[-5:] == ["-m", "exaug", "train", "--config", "cfg.json"]


def test_gpu_hour_estimate_follows_the_cost_model(tmp_path):
    args = reproduce.parse_args(["--out", str(tmp_path), "--epoch-seconds", "100", "--eval-minutes", "0"])
    runs = reproduce.build_grid(args)
    by_name = {r.name: r for r in runs}
    assert reproduce.run_seconds(by_name["cifar100-bs256/supcon/seed0"], 100) == pytest.approx(200 * 100)
    # ExCon at batch 256: 100 plain epochs, then 100 explanation epochs at 1.3x.
    assert reproduce.run_seconds(by_name["cifar100-bs256/excon/seed0"], 100) == pytest.approx(100 * 100 + 100 * 130)
    assert reproduce.run_seconds(by_name["cifar100-bs128/supcon/seed0"], 100) == pytest.approx(200 * 110)
    info = reproduce.estimate(args, runs)
    assert info["gpu_hours"] == pytest.approx(sum(reproduce.run_seconds(r, 100) for r in runs) / 3600)


# -- grid: resumability ----------------------------------------------------------------------------------------------
def test_run_status_and_config_guard(tmp_path):
    args = cifar10_cpu.parse_args(["--quick", "--data", str(tmp_path / "missing.zip"), "--out", str(tmp_path)])
    config = cifar10_cpu.make_config(args, "supcon", 0, tmp_path / "run")
    assert grid.run_status(config.out) == "new" and grid.prepare_config(config).resume is False
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "last.pt").write_bytes(b"")
    (tmp_path / "run" / "config.json").write_text(json.dumps(config.to_dict()))
    assert grid.run_status(config.out) == "partial" and grid.prepare_config(config).resume is True
    (tmp_path / "run" / "summary.json").write_text(json.dumps({"status": "finished"}))
    assert grid.prepare_config(config) is None
    changed = cifar10_cpu.make_config(cifar10_cpu.parse_args([*args_list(tmp_path), "--epochs", "3"]), "supcon", 0,
                                      tmp_path / "run")
    assert changed.epochs == 3  # explicit flags win over --quick's defaults
    with pytest.raises(ValueError, match="epochs"):
        grid.prepare_config(changed)


def args_list(tmp_path: Path) -> list[str]:
    return ["--quick", "--data", str(tmp_path / "missing.zip"), "--out", str(tmp_path)]


def test_cifar10_data_errors_and_fallback(tmp_path, capsys):
    with pytest.raises(SystemExit, match="not found. Pass --data"):
        cifar10_cpu.parse_args(["--data", str(tmp_path / "missing.zip")])
    with pytest.raises(SystemExit):
        cifar10_cpu.parse_args([*args_list(tmp_path), "--jobs", "0"])
    assert "--jobs must be >= 1" in capsys.readouterr().err
    args = cifar10_cpu.parse_args(args_list(tmp_path))
    assert args.data_options == {"dataset": "synthetic", "data_root": None}
    assert "synthetic" in capsys.readouterr().out


def test_cifar10_default_budget():
    args = cifar10_cpu.parse_args(["--data", __file__])  # any existing file passes the zip check
    runs = cifar10_cpu.build_grid(args)
    assert len(runs) == len(cifar10_cpu.STUDY_METHODS) * 3
    assert {r.config.dataset for r in runs} == {"imagefolder-zip"}
    assert {(r.config.model, r.config.width, r.config.epochs, r.config.batch_size) for r in runs} == {
        ("resnet18", 0.25, 5, 64)}
    assert {r.config.train_samples for r in runs} == {3000}
    assert {r.method: r.config.exp_start_epoch for r in runs}["exconb"] == 1


# -- smoke runs ------------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_cifar10_quick(tmp_path, tiny_zip):
    # Two runs side by side in spawned processes; the second call below runs in this process.
    result = cifar10_cpu.main(["--quick", "--data", str(tiny_zip), "--out", str(tmp_path / "runs"),
                               "--results-dir", str(tmp_path / "results"), "--jobs", "2"])
    assert set(result["methods"]) == {"supcon", "exconb"}
    assert set(result["estimate"]["seconds_per_epoch"]) == {"supcon", "exconb"}
    payload = json.loads((tmp_path / "results" / "cifar10_cpu.json").read_text())
    assert payload["dataset"] == "imagefolder-zip" and payload["budget"]["quick"] is True
    assert payload["budget"]["jobs"] == 2 and payload["budget"]["threads"] == 1
    assert payload["run_seconds"]["train"] > 0 and payload["run_seconds"]["eval"] > 0
    evaluation = json.loads((tmp_path / "runs" / "supcon" / "seed0" / "eval" / "eval.json").read_text())
    assert evaluation["evaluation"]["held_out"] is True  # validated on 16 of the 18 test images: 2 are left
    for summary in payload["methods"].values():
        assert summary["seeds"] == [0, 1]
        assert summary["top1"]["n"] == 2 and summary["infidelity"]["n"] == 2
        assert summary["drop_percent@0.15"]["mean"] is not None and summary["ece_fgsm"]["mean"] is not None
        assert summary["stability"]["mean"] is not None
    text = (tmp_path / "results" / "cifar10_cpu.md").read_text()
    assert "drop % @0.45" in text and "| exconb" in text
    # Everything is done: a second call trains and evaluates nothing.
    again = cifar10_cpu.main(["--quick", "--data", str(tiny_zip), "--out", str(tmp_path / "runs"),
                              "--results-dir", str(tmp_path / "results")])
    assert again["estimate"] is None


@pytest.mark.slow
def test_reproduce_dry_run_then_aggregate(tmp_path, capsys):
    out, results = str(tmp_path / "runs"), str(tmp_path / "results")
    reproduce.main(["--dry-run", "--seeds", "1", "--out", out])
    assert "12 runs up to date" in capsys.readouterr().out
    folders = sorted((tmp_path / "runs" / "dry-run").glob("*/*/seed0"))
    assert len(folders) == 12
    assert all(grid.run_status(f) == "finished" and grid.is_evaluated(f) for f in folders)
    # Rerunning skips every finished, evaluated run.
    done = reproduce.main(["--dry-run", "--seeds", "1", "--out", out])["done"]
    assert not any(d["trained"] or d["evaluated"] for d in done)

    result = reproduce.main(["--aggregate", "--dry-run", "--seeds", "1", "--out", out, "--results-dir", results])
    assert result["missing"] == []
    text = (tmp_path / "results" / "reproduce_cifar100_dry_run.md").read_text()
    for method in reproduce.METHODS:
        assert f"| {method} " in text
    for paper in ("76.90 ± 0.66", "77.56 ± 0.54", "58.73 ± 0.26", "1.47e-03", "0.726", "0.273", "0.92"):
        assert paper in text
    for title in ("Table 1", "Table 2", "Table 3a", "Table 3b", "Table 4"):
        assert title in text
    payload = json.loads((tmp_path / "results" / "reproduce_cifar100_dry_run.json").read_text())
    assert set(payload["summaries"]) == set(reproduce.SETTINGS)


@pytest.mark.slow
def test_reproduce_dry_run_through_the_cli(tmp_path):
    """The subprocess path (`python -m exaug train --config`, then `exaug evaluate`) used on GPUs."""
    out = tmp_path / "runs"
    reproduce.main(["--dry-run", "--subprocess", "--seeds", "1", "--settings", "tinyimagenet-bs128", "--methods",
                    "exconb", "--out", str(out)])
    folder = out / "dry-run" / "tinyimagenet-bs128" / "exconb" / "seed0"
    assert grid.run_status(folder) == "finished" and grid.is_evaluated(folder)
    assert json.loads((folder / "config.json").read_text())["image_size"] == 64
    assert (out / "dry-run" / "configs" / "tinyimagenet-bs128_exconb_seed0.json").is_file()
    log = (out / "dry-run" / "logs" / "tinyimagenet-bs128_exconb_seed0.log").read_text()
    assert "-m exaug train --config" in log and "grid.py evaluate" in log


def test_speed_profiled_peak_bytes_counts_tensor_allocations_in_time_order():
    """The profiler helper of speed.py on known allocations: a freed tensor does not add to a later one."""
    import speed_scaling
    import torch

    def one_after_the_other() -> None:
        first = torch.empty(1_000_000)  # 4 MB of float32
        del first
        second = torch.empty(500_000)  # 2 MB
        del second

    def both_alive() -> None:
        first, second = torch.empty(1_000_000), torch.empty(500_000)
        del first, second

    tolerance = 64 * 1024
    assert abs(speed_scaling.profiled_peak_bytes(one_after_the_other) - 4_000_000) < tolerance
    assert abs(speed_scaling.profiled_peak_bytes(both_alive) - 6_000_000) < tolerance
    assert speed_scaling.profiled_peak_bytes(lambda: None) < tolerance


@pytest.mark.slow
def test_speed_quick():
    import math

    import speed

    def positive(value: float) -> bool:
        return math.isfinite(value) and value > 0

    results = speed.main(["--quick"])
    assert {"step", "gradcam", "cam_family", "cache_memory", "views", "drop_increase", "explainers", "memory",
            "routing"} <= set(results)

    step = results["step"]
    for name, ratio in step["excon_cam_over_supcon"].items():
        assert ratio == pytest.approx(step["seconds"][f"excon[{name}]"] / step["seconds"]["supcon"])
    assert set(step["excon_cam_over_supcon"]) == set(speed.CAM_IN_STEP)
    assert {r["method"] for r in results["cam_family"]["rows"]} == {
        "gradcam", "gradcam++", "xgradcam", "layercam", "hirescam", "gradcam_elementwise", "eigencam"}
    assert all(positive(r["native_s"]) and positive(r["pgc_s"]) for r in results["cam_family"]["rows"])
    cache_rows = {(r["layout"], r["dtype"]): r for r in results["cache_memory"]["rows"]}
    # Native 16x16 maps take a quarter of the 32x32 pixel maps' bytes; uint8 a quarter of float32.
    assert cache_rows["native", "float32"]["bytes_per_image"] < cache_rows["pixel", "float32"]["bytes_per_image"]
    assert cache_rows["native", "uint8"]["bytes_per_image"] < cache_rows["native", "float32"]["bytes_per_image"]
    assert cache_rows["pixel", "float32"]["max_abs_error"] == 0.0

    explainers = results["explainers"]
    assert {row["explainer"] for row in explainers["rows"].values()} == {
        "gradcam", "integrated_gradients", "smoothgrad", "gradient_shap", "rise"}
    for row in explainers["rows"].values():
        assert all(positive(row[key]) for key in ("seconds", "forward_seconds", "x_forward"))
        assert row["repeats"] >= 1
        if row["explainer"] == "rise":  # timed on a slice of the batch and scaled to the whole batch
            scale = explainers["batch"] / row["measured_batch"]
            assert row["seconds"] == pytest.approx(row["measured_seconds"] * scale)

    cache = explainers["saliency_cache"]
    k = cache["refresh_every"]
    assert all(positive(cache[key]) for key in ("miss_seconds", "hit_seconds", "amortised_seconds"))
    assert cache["amortised_seconds"] == pytest.approx((cache["miss_seconds"] + (k - 1) * cache["hit_seconds"]) / k)
    assert cache["misses"] == explainers["batch"] and cache["hits"] > 0  # one fill, then only cache reads

    memory = results["memory"]
    assert memory["input_bytes"] == memory["batch"] * 3 * 32 * 32 * 4
    assert len(memory["cases"]) == 3
    for case in memory["cases"].values():
        # Every ExConB call returns at least the two views' worth of images, so its tensors exceed the input batch.
        assert case["torch_cpu_peak"] >= memory["input_bytes"]
        assert case["torch_cpu_peak_over_input"] == pytest.approx(case["torch_cpu_peak"] / memory["input_bytes"])
        assert positive(case["python_heap_peak"])


@pytest.mark.slow
def test_edda_alignment_quick():
    import edda_alignment

    result = edda_alignment.main(["--quick", "--seeds", "2"])
    assert {(r["variant"], r["seed"]) for r in result["runs"]} == {(v, s) for v in edda_alignment.VARIANTS
                                                                   for s in (0, 1)}
    for stats in result["summary"]["synthetic"].values():
        gap, sal, non = stats["gap"]["mean"], stats["sal_drop"]["mean"], stats["non_drop"]["mean"]
        assert gap == pytest.approx(sal - non)
        assert stats["top1"]["std"] >= 0 and 0 <= stats["drop%"]["mean"] <= 1


@pytest.mark.slow
def test_cocoa_quick(tmp_path, tiny_zip):
    import cocoa_cifar10

    settings = cocoa_cifar10.main(["--quick", "--data", str(tiny_zip), "--out", str(tmp_path / "run"),
                                   "--corpus-size", "8", "--foil-size", "20", "--corpus-class", "1"])
    assert set(settings) == {"same", "different"}
    for setting in settings.values():
        assert {"RISE / COCOA", "IG / COCOA", "IG / label-free", "random"} <= set(setting["results"])
        for scores in setting["results"].values():
            for key in ("ccs_insertion", "majority_deletion"):
                assert np.isfinite(scores[key])
            assert 0 <= scores["majority_insertion"] <= 1
        assert "IG / COCOA - random" in setting["paired_differences"]
