"""The restoration tasks and the degradation types trained on (TextPromptIR Sec. 4.1: the
three-task all-in-one setting, denoising at three noise levels; the five-task setting of later
all-in-one papers adds motion deblurring and low-light enhancement)."""
from __future__ import annotations

from utils.errors import UserError

# Every task the project knows, in its one fixed order: the instruction head's outputs, the columns
# of confusion matrices and the order of the names in a task set ("derain+deblur") follow it.
TASKS = ("denoise", "derain", "dehaze", "deblur", "lowlight")
# The paper's three-task setting (TextPromptIR Sec. 4.1): the default training mix and benchmarks
PAPER_TASKS = ("denoise", "derain", "dehaze")
# Tasks whose degraded input the training set can synthesise on the fly from the clean target
# (--synthesize), as it always does the noise
SYNTHETIC_TASKS = ("derain", "dehaze")
DEGRADATIONS = ("denoise_15", "denoise_25", "denoise_50", "derain", "dehaze")


def task_of(de_type: str) -> str:
    """'denoise_25' -> 'denoise', 'derain' -> 'derain', 'dehaze' -> 'dehaze'."""
    if de_type not in DEGRADATIONS:
        raise UserError(f"unknown degradation type {de_type!r}; choose from {', '.join(DEGRADATIONS)}")
    return de_type.split("_")[0]


def sigma_of(de_type: str) -> int | None:
    """The noise level of a denoise_* type (15, 25 or 50), else None."""
    return int(de_type.split("_")[1]) if task_of(de_type) == "denoise" else None
