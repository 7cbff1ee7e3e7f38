"""TCAV: does a class depend on a concept the user defines with images (`run_tcav`, a job)?

Kim et al. 2018's Testing with Concept Activation Vectors, with the CAV fitted in torch on
the device (logistic regression, or FastCAV's mean difference) on spatial-mean activations
(a CAV is a C-vector: a direction of the layer), the TCAV score from one backward per batch
of examples, and Kim et al.'s significance test (random-vs-random CAVs as the null, a
two-sided Student's t-test, Bonferroni over layers). See `job`'s notes.
"""

from app.engine.analyses.tcav.cav import METHODS, Cav, fit_direction, split, train_cav
from app.engine.analyses.tcav.job import (
    ALPHA,
    LayerScore,
    TcavError,
    TcavResult,
    resolve_class,
    run_tcav,
    tcav_root,
)
from app.engine.analyses.tcav.passes import TcavProgress
from app.engine.analyses.tcav.stats import TTest, incomplete_beta, t_test

__all__ = [
    "ALPHA",
    "METHODS",
    "Cav",
    "LayerScore",
    "TTest",
    "TcavError",
    "TcavProgress",
    "TcavResult",
    "fit_direction",
    "incomplete_beta",
    "resolve_class",
    "run_tcav",
    "split",
    "t_test",
    "tcav_root",
    "train_cav",
]
