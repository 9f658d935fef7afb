"""Evaluation metrics: accuracy, explanation quality, calibration and robustness (see ``docs/evaluation.md``).

Each metric is a pure batched function plus a streaming class with ``update`` / ``compute`` / ``reset`` /
``merge`` that declares its state (:meth:`Metric.add_state`) and its direction (``higher_is_better``), and shares
its per-batch update with the function; every model call runs isolated (eval mode, no autograd unless needed,
the model's state untouched).
"""

from .accuracy import Accuracy, knn_accuracy, linear_probe, topk_accuracy
from .base import Metric
from .calibration import (
    AdversarialAccuracy,
    CalibrationError,
    adversarial_accuracy,
    expected_calibration_error,
    fgsm,
    pgd,
    plot_reliability,
    reliability_bins,
)
from .content_heatmap import ContentHeatmap, boxes_to_mask, content_heatmap, object_mask
from .corruptions import CORRUPTIONS, SEVERITY_PARAMETERS, corrupt, corruption_accuracy
from .drop_increase import DROP_INCREASE_KEYS, DropIncrease, drop_increase
from .embeddings import compute_embeddings, plot_tsne, training_stability
from .infidelity import (
    Infidelity,
    SensitivityMax,
    gaussian_perturbation,
    infidelity,
    sensitivity_max,
    square_perturbation,
    uniform_perturbation,
)
from .insertion_deletion import (
    CurveResult,
    InsertionDeletion,
    class_probability_score,
    insertion_deletion,
    representation_similarity_score,
    step_counts,
)
from .localisation import (
    LOCALISATION_KEYS,
    Localisation,
    localisation_scores,
    pointing_game,
    relevance_mass_accuracy,
    relevance_rank_accuracy,
)
from .randomisation import (
    SIMILARITIES,
    ModelParameterRandomisation,
    RandomisationCurve,
    model_parameter_randomisation,
    randomisation_steps,
    spearman_correlation,
    ssim,
)

__all__ = [
    "CORRUPTIONS",
    "DROP_INCREASE_KEYS",
    "LOCALISATION_KEYS",
    "SEVERITY_PARAMETERS",
    "SIMILARITIES",
    "Accuracy",
    "AdversarialAccuracy",
    "CalibrationError",
    "ContentHeatmap",
    "CurveResult",
    "DropIncrease",
    "Infidelity",
    "InsertionDeletion",
    "Localisation",
    "Metric",
    "ModelParameterRandomisation",
    "RandomisationCurve",
    "SensitivityMax",
    "adversarial_accuracy",
    "boxes_to_mask",
    "class_probability_score",
    "compute_embeddings",
    "content_heatmap",
    "corrupt",
    "corruption_accuracy",
    "drop_increase",
    "expected_calibration_error",
    "fgsm",
    "gaussian_perturbation",
    "infidelity",
    "insertion_deletion",
    "knn_accuracy",
    "linear_probe",
    "localisation_scores",
    "model_parameter_randomisation",
    "object_mask",
    "pgd",
    "plot_reliability",
    "plot_tsne",
    "pointing_game",
    "randomisation_steps",
    "relevance_mass_accuracy",
    "relevance_rank_accuracy",
    "reliability_bins",
    "representation_similarity_score",
    "sensitivity_max",
    "spearman_correlation",
    "square_perturbation",
    "ssim",
    "step_counts",
    "topk_accuracy",
    "training_stability",
    "uniform_perturbation",
]
