"""Training for a wall-time budget (``train.py --time_budget MINUTES``).

The budget counts only the time spent in training steps: the first step of a session (compile
and CUDA-graph capture), validation and checkpoint saves are timed apart. After a short measuring
phase (``MEASURE_SKIP`` steps left out of the estimate, then ``MEASURE_STEPS`` timed ones) the
steps the rest of the budget allows are estimated from the measured rate, and the paper's
schedule (Sec. 4.1: linear warm-up, then cosine decay, ``utils.train.schedulers.warmup_cosine``)
is planned for exactly that many steps, with the warm-up's share of the recipe (``--warmup_epochs``
over ``--epochs``). Until then the learning rate stays at the warm-up's first value.

The budget (``Budget``, with its plan: the steps and their schedule) is stored in every checkpoint;
a resumed run keeps it, and stops at the plan's last step or when the budget's training time (counted over all sessions) is spent,
whichever comes first. ``BudgetPolicy`` applies it in the loop: it measures and plans, says why
the run stops (``StopReason``) and which ``--save_at`` checkpoints are due.
"""
from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Sequence

import torch
from torch.optim.lr_scheduler import ConstantLR, LRScheduler

from utils.errors import UserError
from utils.progress import write
from utils.train import dist
from utils.train.schedulers import warmup_cosine

MEASURE_SKIP = 2  # steps after the first left out of the rate (recompiles, allocator and cache warm-up)
MEASURE_STEPS = 10  # steps timed for the rate
WARMUP_START_FACTOR = 1e-3  # warmup_cosine's default: the learning rate of the measuring phase


@dataclass
class Budget:
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
    def from_dict(cls, state: dict[str, Any]) -> Budget:
        return cls(**{k: state[k] for k in cls.__dataclass_fields__ if k in state})


def plan_steps(budget: Budget, step: int, spent_s: float, step_s: float) -> None:
    """Plan ``budget``: fix its total and warm-up steps at ``step``, after ``spent_s`` training seconds, for
    steps of ``step_s`` seconds: the steps done plus those the rest of the budget allows."""
    left_s = max(budget.budget_s - spent_s, 0.0)
    budget.total_steps = max(step + int(left_s / max(step_s, 1e-9)), step, 1)
    budget.warmup_steps = min(round(budget.warmup_share * budget.total_steps), budget.total_steps - 1)
    budget.planned_at, budget.step_s = step, step_s


def measuring_scheduler(optimizer: torch.optim.Optimizer) -> LRScheduler:
    """The schedule before the plan: the warm-up's first learning rate, held."""
    return ConstantLR(optimizer, factor=WARMUP_START_FACTOR, total_iters=2**62)


def planned_scheduler(optimizer: torch.optim.Optimizer, budget: Budget, done_steps: int = 0) -> LRScheduler:
    """``warmup_cosine`` for ``budget``, advanced by ``done_steps`` steps: its learning rate is then
    the planned one at step ``done_steps``, ending at 0 at ``budget.total_steps``. The learning rate is
    set back to its base value first (in place where it is a tensor a CUDA graph reads)."""
    for group in optimizer.param_groups:
        base = group.setdefault("initial_lr", float(group["lr"]))
        if isinstance(group["lr"], torch.Tensor):
            group["lr"].fill_(base)
        else:
            group["lr"] = base
    scheduler = warmup_cosine(optimizer, budget.warmup_steps, budget.total_steps, start_factor=WARMUP_START_FACTOR)
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


class StopReason(Enum):
    """Why training stopped before --epochs; the value is the name messages use."""

    MAX_STEPS = "max_steps"  # --max_steps reached
    PLAN = "plan"  # the last step the time budget planned
    TIME = "time"  # the time budget's training time spent
    SIGINT = "SIGINT"
    SIGTERM = "SIGTERM"

    @property
    def by_budget(self) -> bool:
        return self in (StopReason.PLAN, StopReason.TIME)

    @property
    def by_signal(self) -> bool:
        return self in (StopReason.SIGINT, StopReason.SIGTERM)


def make_scheduler(optimizer: torch.optim.Optimizer, budget: Budget | None, warmup_steps: int,
                   total_steps: int) -> LRScheduler:
    """The paper's warm-up and cosine (Sec. 4.1) over ``total_steps`` (--epochs), or over the steps a
    time budget allows once they are measured."""
    if budget is None:
        return warmup_cosine(optimizer, warmup_steps, total_steps)
    return planned_scheduler(optimizer, budget) if budget.planned else measuring_scheduler(optimizer)


def resumed_budget(path: Path, stored: dict[str, Any] | None, step: int, time_budget: float | None,
                   is_main: bool) -> Budget | None:
    """The time budget a resumed run continues (``stored``: its checkpoint's, at ``step``): the plan is
    kept (a --time_budget that differs is ignored, with a note); a run planned for --epochs cannot take one."""
    if stored is None:
        if time_budget:
            raise UserError(f"{path}: this run's schedule was planned for --epochs, not a time budget; resume it "
                            "without --time_budget, or start a new run (--name NEW) with --time_budget")
        return None
    budget = Budget.from_dict(stored)
    if is_main:
        if time_budget and time_budget != budget.minutes:
            print(f"note: --time_budget {time_budget:g} ignored: the run keeps its plan for "
                  f"{budget.minutes:g} minutes", file=sys.stderr)
        left = max(budget.budget_s - budget.trained_s, 0.0)
        planned = (f"planned for {budget.total_steps} steps, {budget.total_steps - step} to go" if budget.planned
                   else "its step rate not yet measured")
        print(f"time budget {budget.minutes:g} min: {budget.trained_s:.1f} s trained, {left:.1f} s left; {planned}")
    return budget


@dataclass
class BudgetPolicy:
    """When a run stops and which --save_at checkpoints it keeps. It holds the time budget (None:
    the run is planned for --epochs), the training clock, and the step each --save_at fraction falls
    on (fixed at the start, or once a time budget is planned)."""

    budget: Budget | None
    save_at: tuple[float, ...]
    start_step: int  # the step this session started from
    clock: TrainClock = field(default_factory=TrainClock)
    measure_from_s: float = 0.0  # the training clock when the rate's timed steps began
    fraction_at: dict[float, int] = field(default_factory=dict)  # --save_at fraction -> its step
    fractions_saved: set[float] = field(default_factory=set)

    @classmethod
    def start(cls, budget: Budget | None, save_at: Sequence[float] | None, start_step: int,
              epochs_steps: int) -> BudgetPolicy:
        """The policy of a session starting at ``start_step``; ``epochs_steps``: the steps of --epochs."""
        policy = cls(budget, tuple(save_at or ()), start_step)
        if policy.save_at and (budget is None or budget.planned):
            policy.fraction_at = fraction_steps(list(policy.save_at), budget.total_steps if budget else epochs_steps)
        return policy

    def trained_s(self) -> float:
        """Seconds spent in training steps: this session's and, under a time budget, the earlier ones'."""
        return (self.budget.trained_s if self.budget else 0.0) + self.clock.elapsed()

    def record(self) -> dict[str, Any] | None:
        """What a checkpoint stores of the budget (None: the run has none)."""
        return None if self.budget is None else {**self.budget.to_dict(), "trained_s": self.trained_s()}

    def after_step(self, step: int, check_time: bool, optimizer: torch.optim.Optimizer,
                   dist_info: dist.DistInfo) -> tuple[StopReason | None, LRScheduler | None]:
        """After each step: measure the rate and plan (at fixed steps, so every process plans alike),
        and the reason to stop, if any: the plan's last step, or (when ``check_time``, by every process
        together) the budget spent. Also the schedule planned at this step (None: keep the current one)."""
        budget, scheduler = self.budget, None
        if budget is None:
            return None, None
        done = step - self.start_step
        if not budget.planned and done in (1 + MEASURE_SKIP, 1 + MEASURE_SKIP + MEASURE_STEPS):
            if dist_info.device.type == "cuda":
                torch.cuda.synchronize(dist_info.device)
            if done == 1 + MEASURE_SKIP:
                self.measure_from_s = self.clock.elapsed()
            else:
                scheduler = self.plan(step, optimizer, dist_info)
        if budget.planned and step >= budget.total_steps:
            return StopReason.PLAN, scheduler
        if check_time and not dist.all_true(self.trained_s() < budget.budget_s):
            return StopReason.TIME, scheduler
        return None, scheduler

    def plan(self, step: int, optimizer: torch.optim.Optimizer, dist_info: dist.DistInfo) -> LRScheduler:
        """At the end of the measuring phase: the seconds per step (mean over the processes), the
        steps the budget allows, the --save_at steps, and the schedule for them (returned)."""
        budget = self.budget
        step_s = (self.clock.elapsed() - self.measure_from_s) / MEASURE_STEPS
        step_s = float(dist.all_reduce_mean(torch.tensor(step_s, dtype=torch.float64, device=dist_info.device)))
        plan_steps(budget, step, self.trained_s(), step_s)
        scheduler = planned_scheduler(optimizer, budget, step)
        if self.save_at:
            self.fraction_at = fraction_steps(list(self.save_at), budget.total_steps)
        if dist_info.is_main:
            write(f"time budget {budget.minutes:g} min: {step_s * 1e3:.1f} ms per step measured over "
                  f"{MEASURE_STEPS} steps; schedule planned for {budget.total_steps} steps (warm-up "
                  f"{budget.warmup_steps})")
        return scheduler

    def due_fractions(self, step: int, final: bool = False) -> list[float]:
        """The --save_at fractions whose ``at_<f>.pt`` is due at ``step`` (``final``: the end of a time
        budget stands for fraction 1, also when the time ran out a few steps before the plan); each is
        given once."""
        due = []
        for fraction in self.save_at:
            at = self.fraction_at.get(fraction)  # None: a time budget not yet planned
            if ((at is not None and self.start_step < at <= step) or (final and fraction == 1)) \
                    and fraction not in self.fractions_saved:
                self.fractions_saved.add(fraction)
                due.append(fraction)
        return due

    def unsaved_line(self, step: int, stopped: StopReason | None, max_steps: int | None) -> str | None:
        """One line naming the --save_at checkpoints this session should have reached but did not write,
        and why (those an earlier session passed are not counted)."""
        missed = [f for f in self.save_at if f not in self.fractions_saved
                  and not (f in self.fraction_at and self.fraction_at[f] <= self.start_step)]
        if not missed:
            return None
        names = ", ".join(fraction_name(f) for f in missed)
        if self.budget is not None and not self.budget.planned:
            return (f"--save_at: {names} not written: the time budget ran out after {step} steps, before the "
                    f"step rate was measured ({1 + MEASURE_SKIP + MEASURE_STEPS} steps), so the steps of those "
                    "fractions were never planned; give the run a longer --time_budget")
        steps = ", ".join(str(self.fraction_at[f]) for f in missed)
        if stopped is StopReason.MAX_STEPS:
            return (f"--save_at: {names} not written: the run stopped at --max_steps {max_steps}, before "
                    f"their steps ({steps}); continue it with --resume and a higher --max_steps to reach them")
        why = "the time budget ran out" if stopped is StopReason.TIME else "the run ended"
        return f"--save_at: {names} not written: {why} at step {step}, before their steps ({steps})"

    def how_far(self, step: int, where: str, images: int) -> str:
        """How far a time-budget run got: steps against the plan, ``where`` (its epoch), images seen, the
        training time against the budget, and the time spent apart from it."""
        budget = self.budget
        planned = (f"of the {budget.total_steps} planned" if budget.planned
                   else "(the budget ran out before the step rate was measured)")
        apart = ", ".join(f"{kind} {s:.1f} s" for kind, s in self.clock.apart_s.items() if s >= 0.05) or "none"
        return (f"time budget {budget.minutes:g} min: step {step} {planned}, {where}, {images} images seen; "
                f"{self.trained_s():.1f} s in training steps of the {budget.budget_s:.1f} s budget; "
                f"timed apart this session: {apart}")
