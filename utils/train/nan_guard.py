"""The NaN guard: a run whose loss or weights become NaN/inf stops in one line that names the last
good checkpoint, and no checkpoint that gives NaN/inf is ever written."""
from __future__ import annotations

from pathlib import Path

import torch

from net.model import TextPromptIR
from utils.checkpoint import non_finite_tensors
from utils.errors import UserError
from utils.train import dist
from utils.train.resume import Position
from utils.train.step import finite_output


class NonFiniteLoss(UserError):
    pass


def last_good(pos: Position, run_dir: Path) -> str:
    """Which checkpoint of ``run_dir`` is the last one to trust."""
    if pos.last_saved is None:
        before = run_dir / "last.pt"
        return (f"this run saved nothing and {before} is still the one that was there before" if before.is_file()
                else "this run has no checkpoint yet")
    path, step = pos.last_saved
    return f"the last good checkpoint is {path} (step {step})"


def stop_non_finite(what: str, pos: Position, run_dir: Path, precision: str) -> NonFiniteLoss:
    """The error for a run whose loss or weights became NaN/inf: nothing is saved."""
    advice = "lower --lr" + (" or use --precision fp32" if precision != "fp32" else "")
    return NonFiniteLoss(f"{what} at epoch {pos.epoch + 1}, step {pos.step}; stopped without saving, "
                         f"{last_good(pos, run_dir)}; {advice}")


def check_weights(model: TextPromptIR, last_batch: tuple[torch.Tensor, torch.Tensor | None] | None,
                  device: torch.device, precision: str, pos: Position, run_dir: Path) -> None:
    """Stop (on every rank) unless the weights are finite and give a finite output on the last
    training batch (``last_batch``: input and embedding): huge but finite weights can make every
    output NaN."""
    bad = non_finite_tensors(model.state_dict())
    if bad:
        raise stop_non_finite(f"the weights became NaN/inf ({bad[0]})", pos, run_dir, precision)
    if last_batch is not None:
        lq, embedding = last_batch
        if not dist.all_true(finite_output(model, lq, embedding, device, precision)):
            raise stop_non_finite("the weights give NaN/inf outputs", pos, run_dir, precision)
