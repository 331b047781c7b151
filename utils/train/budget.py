"""Training for a wall-time budget (``train.py --time_budget MINUTES``).

The budget counts only the time spent in training steps: the first step of a session (compile
and CUDA-graph capture), validation and checkpoint saves are timed apart. After a short measuring
phase (``MEASURE_SKIP`` steps left out of the estimate, then ``MEASURE_STEPS`` timed ones) the
steps the rest of the budget allows are estimated from the measured rate, and the paper's
schedule (Sec. 4.1: linear warm-up, then cosine decay, ``utils.train.schedulers.warmup_cosine``)
is planned for exactly that many steps, with the warm-up's share of the recipe (``--warmup_epochs``
over ``--epochs``). Until then the learning rate stays at the warm-up's first value.

The plan (``BudgetPlan``) is stored in every checkpoint; a resumed run keeps it, and stops at the
plan's last step or when the budget's training time (counted over all sessions) is spent,
whichever comes first.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch.optim.lr_scheduler import ConstantLR, LRScheduler

from utils.train.schedulers import warmup_cosine

MEASURE_SKIP = 2  # steps after the first left out of the rate (recompiles, allocator and cache warm-up)
MEASURE_STEPS = 10  # steps timed for the rate
WARMUP_START_FACTOR = 1e-3  # warmup_cosine's default: the learning rate of the measuring phase


@dataclass
class BudgetPlan:
    """A run's time budget and the schedule planned for it; ``total_steps`` is 0 until planned."""

    minutes: float
    warmup_share: float  # the warm-up's share of the planned steps
    total_steps: int = 0
    warmup_steps: int = 0
    planned_at: int = 0  # the step at which the rate was measured and the schedule planned
    step_s: float = 0.0  # measured seconds per training step
    trained_s: float = 0.0  # seconds spent in training steps so far, all sessions

    @property
    def planned(self) -> bool:
        return self.total_steps > 0

    @property
    def budget_s(self) -> float:
        return self.minutes * 60.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> BudgetPlan:
        return cls(**{k: state[k] for k in cls.__dataclass_fields__ if k in state})


def plan_steps(plan: BudgetPlan, step: int, spent_s: float, step_s: float) -> None:
    """Fix ``plan``'s total and warm-up steps at ``step``, after ``spent_s`` training seconds, for
    steps of ``step_s`` seconds: the steps done plus those the rest of the budget allows."""
    left_s = max(plan.budget_s - spent_s, 0.0)
    plan.total_steps = max(step + int(left_s / max(step_s, 1e-9)), step, 1)
    plan.warmup_steps = min(round(plan.warmup_share * plan.total_steps), plan.total_steps - 1)
    plan.planned_at, plan.step_s = step, step_s


def measuring_scheduler(optimizer: torch.optim.Optimizer) -> LRScheduler:
    """The schedule before the plan: the warm-up's first learning rate, held."""
    return ConstantLR(optimizer, factor=WARMUP_START_FACTOR, total_iters=2**62)


def planned_scheduler(optimizer: torch.optim.Optimizer, plan: BudgetPlan, done_steps: int = 0) -> LRScheduler:
    """``warmup_cosine`` for ``plan``, advanced by ``done_steps`` steps: its learning rate is then
    the plan's at step ``done_steps``, ending at 0 at ``plan.total_steps``. The learning rate is
    set back to its base value first (in place where it is a tensor a CUDA graph reads)."""
    for group in optimizer.param_groups:
        base = group.setdefault("initial_lr", float(group["lr"]))
        if isinstance(group["lr"], torch.Tensor):
            group["lr"].fill_(base)
        else:
            group["lr"] = base
    scheduler = warmup_cosine(optimizer, plan.warmup_steps, plan.total_steps, start_factor=WARMUP_START_FACTOR)
    for _ in range(done_steps):
        scheduler.step()
    return scheduler


def fraction_steps(fractions: list[float], total_steps: int) -> dict[float, int]:
    """The step at which each fraction of a ``total_steps`` schedule is reached (at least 1)."""
    return {f: max(1, round(f * total_steps)) for f in fractions}


def fraction_name(fraction: float) -> str:
    """The checkpoint file of a --save_at fraction, e.g. ``at_0.25.pt``."""
    return f"at_{fraction:g}.pt"


@dataclass
class TrainClock:
    """Seconds spent in training steps (running between ``start`` and ``pause``), and the seconds
    spent apart from them by kind (first step, validation, saving)."""

    running_since: float | None = None
    trained_s: float = 0.0
    apart_s: dict[str, float] = field(default_factory=dict)

    def start(self) -> None:
        if self.running_since is None:
            self.running_since = time.perf_counter()

    def pause(self) -> None:
        if self.running_since is not None:
            self.trained_s += time.perf_counter() - self.running_since
            self.running_since = None

    def elapsed(self) -> float:
        """Training seconds so far in this session."""
        running = 0.0 if self.running_since is None else time.perf_counter() - self.running_since
        return self.trained_s + running

    def add_apart(self, kind: str, seconds: float) -> None:
        self.apart_s[kind] = self.apart_s.get(kind, 0.0) + seconds


class Apart:
    """``with Apart(clock, "validation"):`` pauses the training clock and times the block apart."""

    def __init__(self, clock: TrainClock, kind: str) -> None:
        self.clock, self.kind = clock, kind

    def __enter__(self) -> Apart:
        self.was_running = self.clock.running_since is not None
        self.clock.pause()
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.clock.add_apart(self.kind, time.perf_counter() - self.t0)
        if self.was_running:
            self.clock.start()
