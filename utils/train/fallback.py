"""A run never lost to a fast path this machine could not test: where compiling the blocks or
capturing the step fails at the first step, training goes on without it (one line says so and
names ``--eager``); where a compiled run's loss turns NaN/inf, the loop puts back the state a
``Snapshot`` kept at the start of that log window and trains the window again with eager blocks.
"""
from __future__ import annotations

import copy
import sys
from typing import Callable

import torch
import torch.nn as nn

from utils.runtime.compile import uncompile_blocks
from utils.train.speed import SpeedSettings
from utils.train.step import TrainStep, failure_reason, graphed_or_plain

COMPILE_FAILED = "torch.compile failed at the first step"
NON_FINITE = "the compiled run's loss became NaN/inf"


def first_step(step: TrainStep, settings: SpeedSettings, model: nn.Module, lq: torch.Tensor, gt: torch.Tensor,
               text: torch.Tensor | None, restore: Callable[[], None]) -> tuple[Callable, torch.Tensor, SpeedSettings]:
    """The run's first step as ``settings`` say (compiling the blocks and capturing the graph happen
    in it). Returns the step function for the next steps, this step's loss and the settings in use.

    Where it fails with compiled blocks, ``restore`` puts the state back, the blocks turn eager
    for good and the step is tried once more (the capture too); an error then is not the
    compile's and passes through, as any error of an eager step does."""
    try:
        return _attempt(step, settings, lq, gt, text)
    except Exception as e:  # no Triton, an old driver, an inductor error: whatever compiling raised
        if not settings.compile:
            raise
        reason = failure_reason(e)
    restore()
    uncompile_blocks(model)
    print(f"note: {COMPILE_FAILED} ({reason}); training with eager blocks (--eager skips compiling)",
          file=sys.stderr)
    return _attempt(step, settings.without_compile(COMPILE_FAILED), lq, gt, text)


def _attempt(step: TrainStep, settings: SpeedSettings, lq: torch.Tensor, gt: torch.Tensor,
             text: torch.Tensor | None) -> tuple[Callable, torch.Tensor, SpeedSettings]:
    step_fn = graphed_or_plain(step, lq, gt, text) if settings.cuda_graph else step
    if step_fn is step and settings.cuda_graph:
        settings = settings.without_graph("its capture failed")
    return step_fn, step_fn(lq, gt, text), settings


def eager_from_now(step: TrainStep, settings: SpeedSettings, model: nn.Module) -> tuple[Callable, SpeedSettings]:
    """After a non-finite window of a compiled run: eager blocks and the plain step for the rest of
    the run. Returns the step function and the settings in use."""
    uncompile_blocks(model)
    step.optimizer.zero_grad(set_to_none=True)
    settings = settings.without_compile(NON_FINITE)
    return step, settings.without_graph(NON_FINITE) if settings.cuda_graph else settings


class Snapshot:
    """The training state at one step, kept on its device, to train from it again: the weights
    (and buffers), the optimizer's state and learning rates, the schedule, the fp16 gradient
    scaler. ``take`` reuses the buffers of the previous snapshot, so keeping one every log window
    costs one copy of the weights and the optimizer state in memory and one device copy of them
    per window. The data is not rewound: the caller keeps the window's batches."""

    def __init__(self) -> None:
        self.step: int | None = None
        self._tensors: list[torch.Tensor] = []
        self._keys: list[tuple[int, str]] = []  # (parameter index, state key) of each optimizer tensor
        self._other: dict = {}

    def take(self, model: nn.Module, step: TrainStep, scheduler, at_step: int) -> None:
        live, keys = self._live(model, step.optimizer)
        with torch.no_grad():
            if self.step is not None and keys == self._keys and all(
                    a.shape == b.shape for a, b in zip(self._tensors, live)):
                torch._foreach_copy_(self._tensors, live)
            else:  # the first snapshot, or the optimizer made its state since the last one
                self._tensors, self._keys = [t.detach().clone() for t in live], keys
        self._other = dict(lr=[float(g["lr"]) for g in step.optimizer.param_groups],
                           scheduler=copy.deepcopy(scheduler.state_dict()),
                           scaler=None if step.scaler is None else step.scaler.state_dict())
        self.step = at_step

    def restore(self, model: nn.Module, step: TrainStep, scheduler) -> int:
        """Put the state back (in place); returns the step it was taken at."""
        optimizer = step.optimizer
        params = [p for g in optimizer.param_groups for p in g["params"]]
        for i, p in enumerate(params):  # state the optimizer made after the snapshot goes
            if p in optimizer.state and not any(k[0] == i for k in self._keys):
                del optimizer.state[p]
        live, keys = self._live(model, optimizer)
        assert keys == self._keys, "the optimizer's state changed shape since the snapshot"
        with torch.no_grad():
            torch._foreach_copy_(live, self._tensors)
        for group, lr in zip(optimizer.param_groups, self._other["lr"]):
            if torch.is_tensor(group["lr"]):  # a graphed step's learning rate lives on the device
                group["lr"].fill_(lr)
            else:
                group["lr"] = lr
        scheduler.load_state_dict(self._other["scheduler"])
        if step.scaler is not None:
            step.scaler.load_state_dict(self._other["scaler"])
        step.optimizer.zero_grad(set_to_none=True)
        return self.step

    @staticmethod
    def _live(model: nn.Module, optimizer: torch.optim.Optimizer) -> tuple[list[torch.Tensor], list[tuple[int, str]]]:
        tensors = list(model.state_dict().values())
        keys = []
        params = [p for g in optimizer.param_groups for p in g["params"]]
        for i, p in enumerate(params):
            for key, value in sorted(optimizer.state.get(p, {}).items()):
                if torch.is_tensor(value):
                    tensors.append(value)
                    keys.append((i, key))
        return tensors, keys
