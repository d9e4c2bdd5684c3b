"""Analysis of trained runs: accuracy over seeds, decision boundaries and their total variation, robustness,
per-run diagnostics. ``python -m regnet.analyze <sweep dir>`` drives it; notebooks call the same API."""

from regnet.analysis.attacks import (
    PixelModel,
    accuracy_bound,
    attack_accuracy,
    autoattack,
    fgsm,
    gaussian_noise,
    jacobian_norms,
    pgd,
    square,
)
from regnet.analysis.boundaries import (
    DEFAULT_PLANES,
    DEFAULT_RESOLUTION,
    DEFAULT_ZOOMS,
    PlaneSettings,
    boundary_records,
    decision_plane,
    distance_to_boundary,
    orthonormal_directions,
    sample_planes,
)
from regnet.analysis.checks import sanity_checks, sanity_flags
from regnet.analysis.device import default_device, full_fp32
from regnet.analysis.diagnostics import learning_curves, run_diagnostics, singular_values, topk_error
from regnet.analysis.records import robustness_records, tv_records
from regnet.analysis.runs import UNLOADABLE, NoRunsError, Sweep, UnloadableRunError, find_runs, load_run, test_inputs
from regnet.analysis.stats import mean_ci, summarize, to_markdown, welch_p
from regnet.analysis.tables import accuracy_table, robustness_table, tv_table
from regnet.analysis.total_variation import boundary_length, total_variation
from regnet.confusion import confusion_matrix

__all__ = [
    "DEFAULT_PLANES",
    "DEFAULT_RESOLUTION",
    "DEFAULT_ZOOMS",
    "UNLOADABLE",
    "NoRunsError",
    "PixelModel",
    "PlaneSettings",
    "Sweep",
    "UnloadableRunError",
    "accuracy_bound",
    "accuracy_table",
    "attack_accuracy",
    "autoattack",
    "boundary_length",
    "boundary_records",
    "confusion_matrix",
    "decision_plane",
    "default_device",
    "distance_to_boundary",
    "fgsm",
    "find_runs",
    "full_fp32",
    "gaussian_noise",
    "jacobian_norms",
    "learning_curves",
    "load_run",
    "mean_ci",
    "orthonormal_directions",
    "pgd",
    "robustness_records",
    "robustness_table",
    "run_diagnostics",
    "sample_planes",
    "sanity_checks",
    "sanity_flags",
    "singular_values",
    "square",
    "summarize",
    "test_inputs",
    "to_markdown",
    "topk_error",
    "total_variation",
    "tv_records",
    "tv_table",
    "welch_p",
]
