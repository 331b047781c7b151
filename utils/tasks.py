"""The restoration tasks and the degradation types trained on (TextPromptIR Sec. 4.1: the
three-task all-in-one setting, denoising at three noise levels; the five-task setting of later
all-in-one papers adds motion deblurring and low-light enhancement)."""
from __future__ import annotations

from utils.errors import UserError

# Every task the project knows, in its one fixed order: the instruction head's outputs, the columns
# of confusion matrices and the order of the names in a task set ("derain+deblur") follow it.
TASKS = ("denoise", "derain", "dehaze", "deblur", "lowlight")
# What each task removes, as messages name it to the user
TASK_WORDS = {"denoise": "noise", "derain": "rain", "dehaze": "haze", "deblur": "blur", "lowlight": "darkness"}
# The paper's three-task setting (TextPromptIR Sec. 4.1): the default training mix and benchmarks
PAPER_TASKS = ("denoise", "derain", "dehaze")
# Tasks whose degraded input the training set can synthesise on the fly from the clean target
# (--synthesize), as it always does the noise
SYNTHETIC_TASKS = ("derain", "dehaze")
DEGRADATIONS = ("denoise_15", "denoise_25", "denoise_50", "derain", "dehaze")
# The order in which a compound request's tasks are restored, one pass each: the best of the six
# orders scored on the demo's composite sets (docs/benchmarks/routes.md#the-order-of-the-passes: they differ
# little there, and all six beat every single pass).
RESTORE_ORDER = ("derain", "denoise", "dehaze")
# The order in which degradations happen when several are present, as the degradation classifier's
# samples are made: the scene's haze, rain in front of it, the camera's shake during the exposure, the
# short exposure's darkness (with its own sensor noise), then the camera's noise.
PHYSICAL_ORDER = ("dehaze", "derain", "deblur", "lowlight", "denoise")
TASK_SEPARATOR = "+"  # a set of tasks as one name: "denoise+derain", in TASKS order
# An input with several degradations at once (test/composite/<task+task>/), restored task by task
COMPOSITE = "composite"
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


def join_tasks(tasks) -> str:
    """A set of tasks as one name in TASKS order: {"derain", "denoise"} -> "denoise+derain"; "none"
    for no task."""
    unknown = sorted(set(tasks) - set(TASKS))
    if unknown:
        raise UserError(f"unknown task {unknown[0]!r}; choose from {', '.join(TASKS)}")
    return TASK_SEPARATOR.join(t for t in TASKS if t in set(tasks)) or "none"


def split_tasks(name: str) -> tuple[str, ...]:
    """"denoise+derain" -> ("denoise", "derain"), in TASKS order; a UserError for an unknown task."""
    parts = [part.strip() for part in name.split(TASK_SEPARATOR) if part.strip()]
    if not parts:
        raise UserError(f"{name!r}: name one or more tasks joined with '+', e.g. denoise+derain")
    join_tasks(parts)  # a UserError for an unknown task
    return tuple(t for t in TASKS if t in set(parts))


def restore_order(tasks, order=RESTORE_ORDER) -> tuple[str, ...]:
    """``tasks`` in the order they are restored (``order``; tasks it leaves out go last, in TASKS order)."""
    chosen = set(tasks)
    return tuple(t for t in order if t in chosen) + tuple(t for t in TASKS if t in chosen and t not in order)
