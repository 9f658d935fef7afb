"""``evaluate_run`` on real tiny runs: outputs, ranges, equality with the metric classes, options and errors."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch.utils.data import DataLoader, Dataset, Subset

from exaug.augment import ExplanationMaskAugment
from exaug.data import dataset_stats
from exaug.evaluation import METRICS, evaluate_run, render_eval_markdown, resolve_metrics, resolve_options
from exaug.evaluation.annotations import object_masks
from exaug.explainers import create_explainer
from exaug.metrics import (
    Accuracy,
    AdversarialAccuracy,
    CalibrationError,
    ContentHeatmap,
    DropIncrease,
    Infidelity,
    InsertionDeletion,
    compute_embeddings,
    corrupt,
    fgsm,
    knn_accuracy,
)
from exaug.training import load_run

LAYER = "encoder.layer2.1.conv2"  # the paper's Grad-CAM layer for a CIFAR ResNet-18 at 32x32
EPS = 4 / 255


def test_writes_json_markdown_and_figures(full_eval):
    result, out = full_eval
    written = json.loads((out / "eval.json").read_text())
    assert written == json.loads(json.dumps(result, default=str))
    assert set(written["metrics"]) == set(METRICS)
    assert written["notes"] == []
    assert written["evaluation"]["images"] == 32
    assert written["run"]["method"] == "exconb" and written["run"]["seed"] == 3
    for key in ("exaug", "torch", "python"):
        assert written["versions"][key]
    assert written["explainer"] == {"name": "gradcam", "target_layer": LAYER, "options": {}, "own": True}
    assert written["settings"]["infidelity"]["n_perturb_samples"] == 3  # the override
    assert written["settings"]["infidelity"]["noise_std"] == 0.003  # a default kept
    assert written["settings"]["drop_increase"]["fill"] == "zero"  # the run's mask_fill
    assert set(written["figures"]) == {"saliency_grid", "reliability", "reliability_fgsm", "insertion_deletion", "tsne",
                                        "randomisation"}
    for file in written["figures"].values():
        assert (out / file).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    markdown = (out / "eval.md").read_text()
    for heading in ("## Accuracy", "## Explanation quality", "## Calibration", "## Adversarial robustness",
                    "## Masked views", "## Figures", "![saliency_grid](saliency_grid.png)"):
        assert heading in markdown
    assert render_eval_markdown(written) == markdown  # the report can be re-rendered from eval.json


def test_numbers_are_finite_and_in_range(full_eval):
    m = full_eval[0]["metrics"]

    def unit(value: float) -> bool:
        return math.isfinite(value) and 0.0 <= value <= 1.0

    assert all(unit(m["accuracy"][k]) for k in ("top1", "top5", "knn_top1"))
    assert m["accuracy"]["top1"] <= m["accuracy"]["top5"]
    assert m["accuracy"]["knn_train_images"] == 48  # the run's train_samples
    assert set(m["drop_increase"]["keep"]) == {"0.15", "0.3", "0.45"}
    for scores in m["drop_increase"]["keep"].values():
        assert unit(scores["drop_percent"]) and unit(scores["increase_percent"])
        assert scores["drop_percent"] + scores["increase_percent"] <= 1.0
        assert scores["drop_mag"] >= 0 and scores["increase_mag"] >= 0
    assert math.isfinite(m["infidelity"]["mean"]) and m["infidelity"]["mean"] >= 0
    ins = m["insertion_deletion"]
    assert unit(ins["insertion_auc"]) and unit(ins["deletion_auc"])
    assert len(ins["x"]) == len(ins["insertion_curve"]) == len(ins["deletion_curve"]) == 9  # 8 steps
    assert unit(m["content_heatmap"]["mean"]) and m["content_heatmap"]["images"] == 32
    cal = m["calibration"]
    assert set(cal["corruptions"]) == {"gaussian_noise", "contrast"}
    values = [cal["ece_clean"], cal["ece_fgsm"], cal["ece_corrupted_mean"],
              *(c["ece"] for c in cal["corruptions"].values())]
    assert all(unit(v) for v in values)
    adv = m["adversarial"]
    assert all(unit(adv[k]) for k in ("clean", "fgsm", "pgd"))
    assert adv["clean"] == m["accuracy"]["top1"] == cal["accuracy_clean"]
    assert adv["fgsm"] == cal["accuracy_fgsm"]  # one FGSM pass shared by both metrics
    assert unit(m["tsne"]["masked_correct"]) and unit(m["tsne"]["kept_area"]) and m["tsne"]["images"] == 32


def test_numbers_equal_direct_metric_calls(runs, full_eval):
    """Feeding the same batches to the metric classes by hand gives the same numbers: nothing is distorted."""
    m = full_eval[0]["metrics"]
    run = load_run(runs["exconb_s3"])
    model = run.classifier_model
    dataset = run.dataset("test", 32, held_out=True)  # the run validated on 32 test images: they are left out
    mean, std = dataset_stats("synthetic")
    m_t, s_t = torch.tensor(mean).view(1, 3, 1, 1), torch.tensor(std).view(1, 3, 1, 1)
    explainer = create_explainer("gradcam", model, target_layer=LAYER)
    accuracy, clean_ece, fgsm_ece = Accuracy((1, 5)), CalibrationError(10), CalibrationError(10)
    noise_ece, contrast_ece = CalibrationError(10), CalibrationError(10)
    drop = DropIncrease(explainer, model, (0.15, 0.30, 0.45), "zero")
    infid = Infidelity(explainer, model, seed=0, n_perturb_samples=3)
    curves = InsertionDeletion(explainer, model, steps=8)
    heatmap = ContentHeatmap()
    fgsm_acc = AdversarialAccuracy(model, "fgsm", eps=EPS, mean=mean, std=std)
    pgd_acc = AdversarialAccuracy(model, "pgd", eps=EPS, alpha=1 / 255, steps=2, seed=0, mean=mean, std=std)
    augment = ExplanationMaskAugment(explainer, mode="exconb", threshold=0.5, fill="zero", target="label")
    feats, labels_all, masked_correct = [], [], 0
    for number, (images, labels) in enumerate(DataLoader(dataset, batch_size=16)):
        with torch.no_grad():
            logits = model(images)
        accuracy.update(logits, labels)
        clean_ece.update(logits, labels)
        with torch.no_grad():
            fgsm_ece.update(model(fgsm(model, images, labels, eps=EPS, mean=mean, std=std)), labels)
            pixels = (images * s_t + m_t).clamp(0, 1)
            noise_ece.update(model((corrupt(pixels, "gaussian_noise", 3, seed=number) - m_t) / s_t), labels)
            contrast_ece.update(model((corrupt(pixels, "contrast", 3, seed=number) - m_t) / s_t), labels)
        drop.update(images)
        infid.update(images)
        curves.update(images)
        masks = object_masks(dataset, [16 * number + i for i in range(len(labels))], (32, 32))
        heatmap.update(explainer(images, labels), masks)
        fgsm_acc.update(images, labels)
        pgd_acc.update(images, labels)
        masked_correct += int(augment(images, (images, images), labels, model).correct.sum())
        feats.append(compute_embeddings(model.encoder, images))
        labels_all.append(labels)
    bank = [(compute_embeddings(model.encoder, x), y) for x, y in DataLoader(run.dataset("train", 48), batch_size=64)]
    knn = knn_accuracy(torch.cat([f for f, _ in bank]), torch.cat([y for _, y in bank]), torch.cat(feats),
                       torch.cat(labels_all), k=20, temperature=0.07, num_classes=10)

    approx = lambda value: pytest.approx(value, rel=1e-6, abs=1e-9)  # noqa: E731
    top = accuracy.compute()
    assert m["accuracy"]["top1"] == approx(top[1]) and m["accuracy"]["top5"] == approx(top[5])
    assert m["accuracy"]["knn_top1"] == approx(float(knn))
    for q, scores in drop.compute().items():
        assert m["drop_increase"]["keep"][repr(q)] == approx(scores)
    assert m["infidelity"]["mean"] == approx(infid.compute())
    res = curves.compute()
    assert m["insertion_deletion"]["insertion_auc"] == approx(res["insertion"]["auc"])
    assert m["insertion_deletion"]["deletion_curve"] == approx(res["deletion"]["curve"])
    assert m["content_heatmap"]["mean"] == approx(heatmap.compute())
    cal = m["calibration"]
    assert cal["ece_clean"] == approx(clean_ece.compute()) and cal["ece_fgsm"] == approx(fgsm_ece.compute())
    assert cal["corruptions"]["gaussian_noise"]["ece"] == approx(noise_ece.compute())
    assert cal["corruptions"]["contrast"]["ece"] == approx(contrast_ece.compute())
    assert m["adversarial"]["fgsm"] == approx(fgsm_acc.compute())
    assert m["adversarial"]["pgd"] == approx(pgd_acc.compute())
    assert m["tsne"]["masked_correct"] == approx(masked_correct / 32)


def test_model_is_never_modified(runs, tmp_path, fast_options):
    run = load_run(runs["exconb_s4"])
    modules = list(run.model.modules()) + list(run.classifier.modules())
    params = list(run.model.parameters()) + list(run.classifier.parameters())
    run.classifier_model.train()  # a user's model may be in train mode with gradients accumulated
    run.classifier.fc.eval()  # ... and with individually frozen submodules
    for p in params:
        p.grad = torch.randn_like(p)
    state = {k: v.clone() for k, v in {**run.model.state_dict(), **run.classifier.state_dict()}.items()}
    grads = [p.grad.clone() for p in params]
    flags = [module.training for module in modules]
    evaluate_run(run, "all", samples=8, batch_size=8, out=tmp_path, progress=False, options=fast_options)
    after = {**run.model.state_dict(), **run.classifier.state_dict()}
    assert all(torch.equal(state[k], after[k]) for k in state)  # weights and BatchNorm statistics
    assert all(torch.equal(g, p.grad) for g, p in zip(grads, params))
    assert flags == [module.training for module in modules]
    assert json.loads((tmp_path / "eval.json").read_text())["run"]["checkpoint"] == "in-memory"


def test_metric_subset(runs, tmp_path, capsys):
    result = evaluate_run(runs["supcon_s3"], metrics="calibration, accuracy", samples=16, batch_size=8,
                          out=tmp_path, options={"calibration": {"corruptions": ()}})
    assert "evaluate supcon_s3" in capsys.readouterr().err  # the tqdm bar over the batches
    assert result["evaluation"]["metrics"] == ["accuracy", "calibration"]  # canonical order
    assert set(result["metrics"]) == {"accuracy", "calibration"}
    assert result["metrics"]["calibration"]["corruptions"] == {}
    assert result["explainer"] is None  # no explanation metric: no explainer, no saliency grid
    assert set(result["figures"]) == {"reliability", "reliability_fgsm"}
    assert not (tmp_path / "saliency_grid.png").exists()
    markdown = (tmp_path / "eval.md").read_text()
    assert "## Calibration" in markdown and "## Explanation quality" not in markdown


@pytest.mark.parametrize(
    ("explainer", "layer", "expected_layer"),
    [("saliency", None, None), ("captum.layer_gradcam", None, LAYER), (None, "encoder.layer3", "encoder.layer3")],
)
def test_explainer_choice(runs, tmp_path, explainer, layer, expected_layer):
    result = evaluate_run(runs["supcon_s3"], metrics=["drop_increase"], explainer=explainer, samples=8,
                          out=tmp_path, progress=False, explainer_layer=layer,
                          options={"drop_increase": {"keep_fractions": (0.45,)}, "grid": {"images": 2}})
    assert result["explainer"]["name"] == (explainer or "gradcam")
    assert result["explainer"]["target_layer"] == expected_layer
    assert result["explainer"]["own"] is (explainer is None)
    assert set(result["metrics"]["drop_increase"]["keep"]) == {"0.45"}


def test_content_heatmap_skipped_without_masks(runs, tmp_path, monkeypatch):
    run = load_run(runs["supcon_s3"])
    images = run.dataset("test", 8)

    class NoMasks(Dataset):  # a dataset that, like CIFAR, has no object annotations
        def __len__(self) -> int:
            return len(images)

        def __getitem__(self, i):
            return images[i]

    monkeypatch.setattr(run, "dataset", lambda split="test", samples=None, held_out=False: NoMasks())
    result = evaluate_run(run, "content_heatmap,adversarial", out=tmp_path, progress=False,
                          options={"adversarial": {"pgd_steps": 1}, "grid": {"images": 2}})
    assert set(result["metrics"]) == {"adversarial"}
    assert any(note.startswith("content_heatmap skipped") for note in result["notes"])
    assert "content_heatmap skipped" in (tmp_path / "eval.md").read_text()


def test_object_masks_through_subsets(runs):
    run = load_run(runs["supcon_s3"])
    base = run.dataset("test", 8)
    subset = Subset(Subset(base, [7, 5, 3, 1]), [3, 0])  # -> base indices 1 and 7
    masks = object_masks(subset, [0, 1], (32, 32))
    assert masks.dtype == torch.bool and masks.shape == (2, 1, 32, 32)
    assert torch.equal(masks[0], base.mask(1)) and torch.equal(masks[1], base.mask(7))
    resized = object_masks(base, [2], (16, 16))
    assert resized.shape == (1, 1, 16, 16) and resized.any()
    assert object_masks(torch.utils.data.TensorDataset(torch.zeros(2, 3, 4, 4)), [0], (4, 4)) is None


def test_unknown_names_suggest_the_closest():
    with pytest.raises(ValueError, match="unknown metric 'acuracy'. Did you mean 'accuracy'"):
        resolve_metrics("acuracy,calibration")
    with pytest.raises(ValueError, match="no metric selected"):
        resolve_metrics(" , ")
    assert resolve_metrics("all") == METRICS
    assert resolve_metrics(["tsne", "accuracy", "tsne"]) == ("accuracy", "tsne")
    with pytest.raises(ValueError, match="Did you mean 'infidelity'"):
        resolve_options({"infidelty": {}})
    with pytest.raises(ValueError, match="Did you mean 'n_perturb_samples'"):
        resolve_options({"infidelity": {"n_perturb_sample": 2}})


def test_errors_before_any_work(runs, tmp_path):
    with pytest.raises(ValueError, match="Did you mean 'gradcam'"):
        evaluate_run(runs["supcon_s3"], explainer="gradcamm", out=tmp_path)
    with pytest.raises(ValueError, match="unknown metric"):
        evaluate_run(runs["supcon_s3"], metrics="drop", out=tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        evaluate_run(tmp_path / "missing", out=tmp_path)
    with pytest.raises(FileNotFoundError, match="not an exaug run folder"):
        evaluate_run(tmp_path, out=tmp_path / "eval")
    with pytest.raises(ValueError, match="samples must be a positive int"):
        evaluate_run(runs["supcon_s3"], samples=0, out=tmp_path)
    assert not (tmp_path / "eval.json").exists()
