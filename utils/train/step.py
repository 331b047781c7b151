"""One optimisation step of the paper's recipe (Sec. 4.1: L1 loss, AdamW) and the ways to make
it fast on a GPU: no host synchronisation inside the step, fused AdamW, regional
``torch.compile`` of the transformer blocks, and capture of the whole step as a CUDA graph.

The step returns the loss as a device tensor; the training loop reads it (one sync) only every
``--log_every`` steps.
"""
from __future__ import annotations

import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

from utils.runtime.compile import eager_blocks
from utils.runtime.device import autocast_as

GRAPH_WARMUP_STEPS = 3  # eager steps on a side stream before capture (lazy inits happen there)


def make_optimizer(model: nn.Module, lr: float, weight_decay: float, device: torch.device,
                   graphed: bool = False) -> torch.optim.AdamW:
    """AdamW, fused (one kernel for all parameters: faster than the default loop on a CPU,
    docs/benchmarks/gpu.md#what-changed-for-the-gpu, and on CUDA fewer launches). For a CUDA graph the learning rate is a device tensor, so the
    scheduler can change it between replays."""
    params = [p for p in model.parameters() if p.requires_grad]
    if graphed:
        return torch.optim.AdamW(params, lr=torch.tensor(lr, device=device), weight_decay=weight_decay,
                                 fused=True, capturable=True)
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=device.type in ("cuda", "cpu") or None)


def match_lr_type(optimizer: torch.optim.Optimizer, device: torch.device, graphed: bool) -> None:
    """After ``load_state_dict``: a device tensor learning rate for a graphed step, a float otherwise
    (checkpoints move between the two)."""
    for group in optimizer.param_groups:
        value = float(group["lr"])
        group["lr"] = torch.tensor(value, device=device) if graphed else value


@torch.no_grad()
def finite_output(model: nn.Module, lq: torch.Tensor, text: torch.Tensor | None, device: torch.device,
                  precision: str) -> bool:
    """Whether ``model`` gives a finite output on ``lq``: without autograd (no activation set is
    kept, so the check needs no memory beyond one forward's) and with compiled blocks run
    eagerly (nothing recompiles). ``precision`` is a resolved one (``autocast_as``)."""
    with eager_blocks(), autocast_as(device, precision):
        return bool(torch.isfinite(model(lq, text)).all())


LOSS_CHOICES = ("l1", "psnr")
# The PSNR loss stops rewarding a sample past 50 dB (MSE 1e-5), and a sample whose input is its target
# (an identity pair, --identity_share) past --identity_floor dB (35 by default, MSE 10^-3.5): such a pair
# can be matched exactly, its -log(MSE) would otherwise grow without end, and its gradient (1/MSE) would
# drown the degraded samples' until the passes learnt to change nothing (docs/benchmarks/routes.md#do-no-harm).
PSNR_LOSS_FLOOR = 1e-5
IDENTITY_FLOOR_DB = 35.0


def restoration_loss(out: torch.Tensor, gt: torch.Tensor, kind: str = "l1",
                     identity: torch.Tensor | None = None, identity_floor_db: float = IDENTITY_FLOOR_DB) -> torch.Tensor:
    """``l1``: the paper's L1 loss (Sec. 4.1). ``psnr``: the mean over samples of 10·log10 of each
    sample's MSE, i.e. minus the PSNR the tables report (the PSNR loss of HINet and NAFNet): each
    sample's gradient is divided by its own error, so a task whose errors are small (light rain,
    σ=15) weighs as much as one whose errors are large (σ=50). A sample's MSE counts from
    PSNR_LOSS_FLOOR up, and from the MSE of ``identity_floor_db`` up where ``identity`` (B,) marks an
    identity pair: past it the sample adds no gradient."""
    if kind == "l1":
        return F.l1_loss(out, gt)
    mse = (out - gt).square().flatten(1).mean(1)  # (B,)
    floor = torch.full_like(mse, PSNR_LOSS_FLOOR)
    if identity is not None:
        floor = torch.where(identity, 10.0 ** (-identity_floor_db / 10.0), floor)
    return 10.0 * torch.log10(torch.maximum(mse, floor) + 1e-8).mean()


class TrainStep:
    """forward (autocast in ``precision``: ``"bf16"``, ``"fp16"`` or ``"fp32"``, as
    ``utils.runtime.device.resolve_precision`` gives it), the loss, backward, optional gradient clipping,
    AdamW step. fp16 scales the loss with a ``torch.amp.GradScaler`` (a step whose gradients
    overflow is skipped and the scale lowered). ``step(lq, gt, text)`` returns the detached loss on
    the device: no host sync (with fused AdamW the scaler's inf check stays on the device too)."""

    def __init__(self, net: nn.Module, optimizer: torch.optim.Optimizer, device: torch.device,
                 precision: str, grad_clip: float = 0.0, loss: str = "l1",
                 identity_floor_db: float = IDENTITY_FLOOR_DB) -> None:
        autocast_as(device, precision)  # a resolved precision, or a ValueError
        self.net, self.optimizer, self.device = net, optimizer, device
        self.precision, self.loss, self.identity_floor_db = precision, loss, identity_floor_db
        self.scaler = torch.amp.GradScaler(device.type) if precision == "fp16" else None
        self.grad_clip = grad_clip
        self.params = [p for group in optimizer.param_groups for p in group["params"]]

    def loss_and_update(self, lq: torch.Tensor, gt: torch.Tensor, text: torch.Tensor | None,
                        autocast_cache: bool = True) -> torch.Tensor:
        """The step without zeroing the gradients first (the CUDA graph captures exactly this)."""
        with autocast_as(self.device, self.precision, cache=autocast_cache):
            out = self.net(lq, text)
        identity = (lq == gt).flatten(1).all(1)  # (B,): the pairs whose input is their target
        loss = restoration_loss(out.float(), gt, self.loss, identity, self.identity_floor_db)
        if self.scaler is None:
            loss.backward()
            if self.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(self.params, self.grad_clip, foreach=True)
            self.optimizer.step()
            return loss.detach()
        self.scaler.scale(loss).backward()
        if self.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)  # clip the true gradients
            torch.nn.utils.clip_grad_norm_(self.params, self.grad_clip, foreach=True)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return loss.detach()

    def __call__(self, lq: torch.Tensor, gt: torch.Tensor, text: torch.Tensor | None) -> torch.Tensor:
        self.optimizer.zero_grad(set_to_none=True)
        return self.loss_and_update(lq, gt, text)


class CaptureFailed(RuntimeError):
    """The step could not be captured as a CUDA graph (the message says why, in one line)."""


def failure_reason(e: BaseException) -> str:
    """An error's message in one line of at most 200 characters: its first line, with the next
    where the first only announces it (torch.compile's "backend='inductor' raised:"); its type when
    it has no message."""
    lines = [line.strip() for line in str(e).splitlines() if line.strip()] or [type(e).__name__]
    first = f"{lines[0]} {lines[1]}" if lines[0].endswith(":") and len(lines) > 1 else lines[0]
    return first[:200]


class CudaGraphStep:
    """The same step captured once as a CUDA graph and replayed: one launch per step instead of
    about ten thousand. Needs one GPU, a fixed batch shape and a capturable optimizer
    (``make_optimizer(graphed=True)``). Capture runs a few warm-up steps; the weights and the
    optimizer state are put back afterwards, so training is the same as without the graph. An error
    of the warm-up steps is the step's own (e.g. compiling) and passes through; one of the capture
    is a ``CaptureFailed``."""

    def __init__(self, step: TrainStep, lq: torch.Tensor, gt: torch.Tensor, text: torch.Tensor | None) -> None:
        if step.scaler is not None:
            raise CaptureFailed("the fp16 gradient scaler is not captured in a CUDA graph")
        self.step = step
        self.static = [t.clone() if t is not None else None for t in (lq, gt, text)]
        params = step.params
        saved_params = [p.detach().clone() for p in params]
        state = step.optimizer.state
        saved_state = {id(t): t.clone() for s in state.values() for t in s.values() if torch.is_tensor(t)}

        try:
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(GRAPH_WARMUP_STEPS):
                    step.optimizer.zero_grad(set_to_none=True)
                    step.loss_and_update(*self.static, autocast_cache=False)
            torch.cuda.current_stream().wait_stream(side)
        finally:
            with torch.no_grad():  # undo the warm-up steps, also when they failed
                for p, saved in zip(params, saved_params):
                    p.copy_(saved)
                for s in state.values():
                    for t in s.values():
                        if torch.is_tensor(t):
                            t.copy_(saved_state[id(t)]) if id(t) in saved_state else t.zero_()
        step.optimizer.zero_grad(set_to_none=True)  # backward in the graph then writes the grads anew
        try:
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph):
                self.loss = step.loss_and_update(*self.static, autocast_cache=False)
        except RuntimeError as e:
            raise CaptureFailed(failure_reason(e)) from e

    def __call__(self, lq: torch.Tensor, gt: torch.Tensor, text: torch.Tensor | None) -> torch.Tensor:
        for static, new in zip(self.static, (lq, gt, text)):
            if static is not None:
                static.copy_(new, non_blocking=True)
        self.graph.replay()
        return self.loss


def graphed_or_plain(step: TrainStep, lq: torch.Tensor, gt: torch.Tensor, text: torch.Tensor | None):
    """A CudaGraphStep for the first batch's shapes, or ``step`` itself where the capture fails (the
    reason is printed in one line)."""
    try:
        return CudaGraphStep(step, lq, gt, text)
    except CaptureFailed as e:
        print(f"note: CUDA graph capture failed ({e}); training without it (--eager skips compiling and the "
              "capture)", file=sys.stderr)
        step.optimizer.zero_grad(set_to_none=True)
        return step
