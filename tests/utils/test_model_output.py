"""check_model_output: (B, K) logits covering the labels, and a once-per-model warning on normalised embeddings."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from exaug.utils.checks import check_model_output


def test_accepts_logits_that_cover_the_labels():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_model_output(torch.randn(4, 10) * 5, 4, torch.tensor([0, 9, 3, 3]), model=nn.Identity())


@pytest.mark.parametrize("output", [torch.randn(4), torch.randn(4, 10, 1), torch.randn(3, 10), "logits"])
def test_rejects_outputs_that_are_not_batch_logits(output):
    with pytest.raises(ValueError, match=r"model must return logits of shape \(B, K\) = \(4, K\)"):
        check_model_output(output, 4)


@pytest.mark.parametrize("labels, bad", [([0, 4, 1], "[0, 4]"), ([-1, 2, 1], "[-1, 2]")])
def test_label_out_of_range_names_both_arguments_and_the_fix(labels, bad):
    with pytest.raises(ValueError, match=r"labels must be class indices in \[0, 3\] \(net returns 4 logits") as err:
        check_model_output(torch.randn(3, 4), 3, torch.tensor(labels), name="net")
    assert f"got values in {bad}" in str(err.value) and "exaug.Classifier(encoder, linear)" in str(err.value)


def test_normalised_embeddings_warn_once_per_model():
    model, other = nn.Identity(), nn.Identity()
    embeddings = F.normalize(torch.randn(8, 128), dim=1)
    with pytest.warns(UserWarning, match=r"normalised embeddings.*exaug\.Classifier\(encoder, linear\)"):
        check_model_output(embeddings, 8, model=model)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_model_output(embeddings, 8, model=model)  # tested once per model: no second warning, no sync
    with pytest.warns(UserWarning, match="normalised embeddings"):
        check_model_output(embeddings, 8, model=other)


def test_rows_off_unit_norm_by_more_than_the_tolerance_do_not_warn():
    logits = F.normalize(torch.randn(8, 16), dim=1)
    logits[3] *= 1.01  # one row off by 1e-2: real logits can be anything, but not all unit-norm
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_model_output(logits, 8)


def test_score_models_are_not_flagged():
    class Scores(nn.Identity):
        outputs_scores = True  # the convention of exaug.targets: similarity scores, not logits

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_model_output(F.normalize(torch.randn(4, 8), dim=1), 4, model=Scores())
