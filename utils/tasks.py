"""The restoration tasks and the degradation types trained on (TextPromptIR Sec. 4.1: the
three-task all-in-one setting, denoising at three noise levels)."""
from __future__ import annotations

from utils.errors import UserError

TASKS = ("denoise", "derain", "dehaze", "deblur", "lowlight")
PAPER_TASKS = ("denoise", "derain", "dehaze")
# Tasks whose degraded input the training set can synthesise on the fly from the clean target
# (--synthesize), as it always does the noise
SYNTHETIC_TASKS = ("derain", "dehaze")
DEGRADATIONS = ("denoise_15", "denoise_25", "denoise_50", "derain", "dehaze")
# What --de_type accepts: the paper's three tasks (the default, DEGRADATIONS) and the five-task setting's
# motion deblurring (GoPro) and low-light enhancement (LOL-v1)
DEGRADATION_CHOICES = DEGRADATIONS + ("deblur", "lowlight")


def task_of(de_type: str) -> str:
    """'denoise_25' -> 'denoise', 'derain' -> 'derain', 'deblur' -> 'deblur', ..."""
    if de_type not in DEGRADATION_CHOICES:
        raise UserError(f"unknown degradation type {de_type!r}; choose from {', '.join(DEGRADATION_CHOICES)}")
    return de_type.split("_")[0]


def sigma_of(de_type: str) -> int | None:
    """The noise level of a denoise_* type (15, 25 or 50), else None."""
    return int(de_type.split("_")[1]) if task_of(de_type) == "denoise" else None
