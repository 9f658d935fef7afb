"""``exaug explain`` on a tiny run trained on the synthetic data: PNGs for class, COCOA and label-free targets."""

from __future__ import annotations

import argparse

import pytest
import torch

from exaug.cli import build_parser, main


@pytest.fixture(scope="module")
def tiny_run(runs):
    """A SupCon run on the synthetic data (tests/cli/conftest.py)."""
    return runs["supcon_s3"]


def parse(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["explain", *argv])


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
                 "--option", "grid=4", "--option", 'baseline="blur"', "--out", str(tmp_path / "json"))
    assert args.func(args) == 0
    assert pngs(tmp_path / "json") == ["000_test1.png", "grid.png"]
    # The same with a bare word: strings need no JSON quotes.
    args = parse("--run", str(tiny_run), "--index", "1", "--target", "cocoa", "--corpus-class", "2",
                 "--corpus-size", "4", "--foil-size", "8", "--explainer", "rise", "--option", "n_masks=32",
                 "--option", "grid=4", "--option", "baseline=blur", "--out", str(tmp_path))
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
def test_errors_name_the_argument(argv, message, tmp_path, capsys):
    assert main(["explain", *argv, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("exaug explain: error: ") and message in err and err.count("\n") == 1
    with pytest.raises(ValueError, match=message):
        main(["--debug", "explain", *argv, "--out", str(tmp_path)])


def test_bad_option_syntax(capsys):
    with pytest.raises(SystemExit) as info:
        parse("--model", "resnet18", "--option", "n_masks")
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("exaug explain: error: argument --option: --option 'n_masks' must look like KEY=VALUE")
    assert err.count("\n") == 1


@pytest.mark.parametrize("argv, message", [
    (["--class", "10"], "--class 10 is out of range: the classifier has 10 classes"),
    (["--class", "-1"], "--class -1 is out of range"),
    (["--device", "cuda:7"], "device 'cuda:7'"),
    (["--option", "relux=1"], "relux"),
])
def test_more_usage_errors(argv, message, tmp_path, capsys):
    base = ["explain", "--model", "resnet18", "--dataset", "synthetic", "--index", "0", "--image-size", "16"]
    assert main([*base, *argv, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("exaug explain: error: ") and message in err and err.count("\n") == 1


def test_unreadable_image_and_missing_run(tmp_path, capsys):
    bogus = tmp_path / "not-an-image.png"
    bogus.write_text("plain text")
    assert main(["explain", "--model", "resnet18", "--image", str(bogus), "--out", str(tmp_path)]) == 2
    assert "is not a readable image" in capsys.readouterr().err
    assert main(["explain", "--run", str(tmp_path / "nope"), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("exaug explain: error: ") and err.count("\n") == 1


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
