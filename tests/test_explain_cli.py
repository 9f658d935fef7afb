"""``exaug explain`` on a tiny run trained on the synthetic data: PNGs for class, COCOA and label-free targets."""

from __future__ import annotations

import argparse

import pytest
import torch

from exaug import explain_cli
from exaug.training import TrainConfig, Trainer

TINY = dict(
    method="supcon", dataset="synthetic", model="resnet18", width=0.0625, feat_dim=16, epochs=1, batch_size=16,
    lr=0.05, classifier_lr=0.05, train_samples=48, eval_samples=32, quiet=True, device="cpu", seed=3,
)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("explain") / "run"
    Trainer(TrainConfig(**TINY, out=str(out))).fit()
    return out


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="exaug")
    explain_cli.add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["explain", *argv])


def pngs(folder):
    return sorted(p.name for p in folder.glob("*.png"))


def test_class_target_writes_one_png_per_image_and_a_grid(tiny_run, tmp_path):
    args = parse("--run", str(tiny_run), "--index", "0", "3", "--explainer", "gradcam", "--out", str(tmp_path))
    assert args.func(args) == 0
    assert pngs(tmp_path) == ["000_test0.png", "001_test3.png", "grid.png"]
    assert all((tmp_path / name).stat().st_size > 1000 for name in pngs(tmp_path))


def test_cocoa_target_with_rise_options(tiny_run, tmp_path):
    args = parse("--run", str(tiny_run), "--index", "1", "--target", "cocoa", "--corpus-class", "2",
                 "--corpus-size", "4", "--foil-size", "8", "--explainer", "rise", "--option", "n_masks=32",
                 "--option", "grid=4", "--option", 'baseline="blur"', "--out", str(tmp_path))
    assert args.func(args) == 0
    assert pngs(tmp_path) == ["000_test1.png", "grid.png"]


def test_label_free_target_on_image_files(tiny_run, tmp_path):
    from PIL import Image

    files = []
    for i in range(2):
        path = tmp_path / f"img{i}.png"
        Image.fromarray((torch.rand(20, 24, 3) * 255).byte().numpy()).save(path)
        files.append(str(path))
    out = tmp_path / "out"
    args = parse("--run", str(tiny_run), "--image", *files, "--target", "label-free", "--explainer", "saliency",
                 "--out", str(out))
    assert args.func(args) == 0
    assert pngs(out) == ["000_img0.png", "001_img1.png", "grid.png"]


def test_relax_explains_the_encoder(tiny_run, tmp_path):
    args = parse("--run", str(tiny_run), "--index", "2", "--target", "label-free", "--explainer", "relax",
                 "--option", "n_masks=16", "--out", str(tmp_path))
    assert args.func(args) == 0
    assert pngs(tmp_path) == ["000_test2.png", "grid.png"]


def test_model_by_name_on_a_dataset(tmp_path):
    args = parse("--model", "resnet18", "--dataset", "synthetic", "--index", "0", "--image-size", "16",
                 "--explainer", "gradcam", "--out", str(tmp_path))
    assert args.func(args) == 0
    assert pngs(tmp_path) == ["000_test0.png", "grid.png"]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--index", "0"], "exactly one of --run"),
        (["--model", "resnet18", "--target", "cocoa", "--image-size", "16", "--dataset", "synthetic"],
         "--corpus-class"),
        (["--model", "resnet18", "--dataset", "synthetic", "--index", "100000", "--image-size", "16"], "--index"),
        (["--model", "resnet18", "--dataset", "synthetic", "--image-size", "16", "--explainer", "rise",
          "--option", "n_masks=0"], "n_masks"),
        (["--model", "resnet18", "--dataset", "synthetic", "--image-size", "16", "--explainer", "relax"],
         "label-free"),
    ],
)
def test_errors_name_the_argument(argv, message, tmp_path):
    args = parse(*argv, "--out", str(tmp_path))
    with pytest.raises(SystemExit, match=message):
        args.func(args)


def test_bad_option_syntax():
    with pytest.raises(SystemExit):
        parse("--model", "resnet18", "--option", "n_masks")


@pytest.mark.parametrize("target, explainer, options, expected", [
    ("label-free", "saliency", [], "sum"),  # representation targets: the paper's signed channel mean
    ("label-free", "saliency", ["--option", 'channel_reduction="abs_sum"'], "abs_sum"),  # the user's choice wins
    ("class", "saliency", [], None),  # class targets keep the registry default
    ("label-free", "relax", [], None),  # explainers without the option get none
])
def test_channel_reduction_default_for_representation_targets(tiny_run, tmp_path, monkeypatch, target, explainer,
                                                               options, expected):
    import exaug.explainers

    seen = {}
    original = exaug.explainers.create_explainer

    def spy(name, model, **kwargs):
        seen.update(kwargs)
        return original(name, model, **kwargs)

    monkeypatch.setattr(exaug.explainers, "create_explainer", spy)
    args = parse("--run", str(tiny_run), "--index", "0", "--target", target, "--explainer", explainer, *options,
                 "--out", str(tmp_path / "out"))
    assert args.func(args) == 0
    assert seen.get("channel_reduction") == expected
