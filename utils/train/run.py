"""One restoration training run: what it holds (``Run``), its log and options file (``open_log``), its step (``one_step``: the batch to the
device, the step function, the schedule), the log windows between host syncs (``report``, with the
compiled run's eager retry of a NaN/inf window), and its checkpoint saves behind the NaN guard.
train.py builds the run and loops over these."""
from __future__ import annotations

import math
import time
from argparse import Namespace
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
import yaml
from torch.utils.data import DataLoader

from net.model import TextPromptIR, count_parameters
from utils.atomic import write_text
from utils.checkpoint import remove_stale_temps, save_checkpoint
from utils.data.sampler import EpochSampler
from utils.full_disk import naming_full_disk
from utils.progress import write
from utils.recipe import recipe_record
from utils.runtime.compile import compile_line
from utils.runtime.device import describe
from utils.text.encoder_link import register_dependent
from utils.train import dist
from utils.train.budget import BudgetPolicy, TrainClock
from utils.train.fallback import Snapshot, eager_from_now, first_step
from utils.train.nan_guard import check_weights, stop_non_finite
from utils.train.resume import Position, checkpoint_state
from utils.train.speed import SpeedSettings, first_step_line
from utils.train.step import TrainStep
from utils.train.tensorboard_log import TensorBoardLog

DATA_WAIT_WARNING = 0.10  # warn when the step waits for data this share of the time


@dataclass
class Throughput:
    """What the loop measures of its own speed; the first log window (compile, graph capture,
    worker start-up) is kept out of the steady-state sums."""

    first_step_s: float | None = None
    past_first_window: bool = False
    warned_data_wait: bool = False
    steady_images: int = 0
    steady_seconds: float = 0.0
    steady_wait_s: float = 0.0

    def add_window(self, images: int, seconds: float, wait_s: float) -> None:
        if not self.past_first_window:  # compile, graph capture, worker start-up: not steady state
            self.past_first_window = True
            return
        self.steady_images, self.steady_seconds = self.steady_images + images, self.steady_seconds + seconds
        self.steady_wait_s += wait_s

    def line(self, log_every: int) -> str:
        """Images/s and data-wait share after the first log window (compile and start-up excluded)."""
        if not self.steady_seconds:
            return ""
        return (f"; {self.steady_images / self.steady_seconds:.1f} images/s after the first {log_every} steps, "
                f"waiting for data {self.steady_wait_s / self.steady_seconds:.0%} of the time")


@dataclass
class Run:
    """Everything one training run holds; the loop's functions read it and advance ``pos``."""

    args: Namespace
    dist_info: dist.DistInfo
    model: TextPromptIR
    train_step: TrainStep
    scheduler: Any
    loader: DataLoader
    sampler: EpochSampler
    steps_per_epoch: int
    table: torch.Tensor | None  # instruction embeddings of the bank, on the device
    val_embeddings: dict[str, torch.Tensor] | None  # each task's validation instruction
    val_sets: list
    text_record: dict[str, Any] | None
    run_dir: Path
    pos: Position
    speed_settings: SpeedSettings  # the start-up settings, less what failed (utils/train/fallback.py)
    policy: BudgetPolicy  # when to stop, which --save_at checkpoints to keep (utils/train/budget.py)
    compile_cache: Path | None = None
    log: TensorBoardLog | None = None  # rank 0's TensorBoard log
    step_fn: Callable | None = None  # train_step, or its CUDA graph once captured
    snapshot: Snapshot | None = None  # with compiled blocks: the state where the log window began
    last_batch: tuple[torch.Tensor, torch.Tensor | None] | None = None  # (input, embedding): the save check runs on it
    throughput: Throughput = field(default_factory=Throughput)

    @property
    def optimizer(self) -> torch.optim.Optimizer:
        return self.train_step.optimizer

    @property
    def clock(self) -> TrainClock:
        return self.policy.clock


def open_log(run: Run, samples: int) -> None:
    """TensorBoard log, the run's recipe beside logs and checkpoints, one summary line; a folder
    without room for them is a one-line error."""
    args, dist_info = run.args, run.dist_info
    log_dir = Path(args.log_dir) / args.name
    run.log = TensorBoardLog(log_dir)
    resolved = recipe_record(args)  # the recipe only: --config <this file> repeats the run
    for folder, option in ((log_dir, "--log_dir"), (run.run_dir, "--ckpt_dir")):
        with naming_full_disk(folder, "options.yaml", f"free some space there or pass another {option}"):
            # the run's own: replaced whole, as a resumed run writes it again
            write_text(folder / "options.yaml", yaml.safe_dump(resolved, sort_keys=False), replace=True)
    if run.text_record is not None:
        with naming_full_disk(Path(args.text_ckpt), "the record of the checkpoints trained with this encoder",
                              "free some space there"):
            register_dependent(args.text_ckpt, run.run_dir / "last.pt")
    print(f"TextPromptIR: {count_parameters(run.model) / 1e6:.2f}M parameters, "
          f"{describe(run.model, dist_info.device, args.precision)}; {samples} samples, "
          f"{run.steps_per_epoch} steps/epoch x {args.epochs} epochs on {dist_info.world_size} x {dist_info.device}")


def save(run: Run, path: Path) -> None:
    """Write a checkpoint (rank 0) of weights that the NaN guard (``utils.train.nan_guard``) passed: no
    checkpoint that gives NaN/inf is ever written."""
    check_weights(run.model, run.last_batch, run.dist_info.device, run.train_step.precision, run.pos, run.run_dir)
    if not run.dist_info.is_main:
        return
    save_checkpoint(path, checkpoint_state(run.model, run.optimizer, run.scheduler, run.pos, run.args,
                                           run.text_record, run.speed_settings.record(), run.train_step.scaler,
                                           run.policy.record()))
    remove_stale_temps(path.parent)
    if path.name == "last.pt":
        run.pos.last_saved = (path, run.pos.step)


@dataclass
class Window:
    """What the loop gathers between two log points, on the device where it can."""

    loss_sum: torch.Tensor | float = 0.0
    steps: int = 0
    batches: list | None = None  # with compiled blocks: the window's batches, to train them again eagerly
    wait_s: float = 0.0
    start: float = field(default_factory=time.perf_counter)


def report(run: Run, window: Window, bar) -> None:
    """The loop's only regular host sync: mean loss over the window (all ranks), the NaN/inf
    stop, throughput, the share of time spent waiting for data, TensorBoard scalars."""
    if window.steps == 0:
        return
    loss = dist.all_reduce_mean(torch.as_tensor(window.loss_sum, dtype=torch.float32) / window.steps).item()
    if not math.isfinite(loss):
        if run.snapshot is not None and window.batches is not None:
            return train_window_again(run, window, bar, loss)
        raise stop_non_finite(f"the loss became {loss}", run.pos, run.run_dir, run.train_step.precision)
    seconds = max(time.perf_counter() - window.start, 1e-9)
    images = window.steps * run.args.batch_size * run.dist_info.world_size
    images_per_s, wait_share = images / seconds, window.wait_s / seconds
    lr = float(run.scheduler.get_last_lr()[0])
    bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}", img_s=f"{images_per_s:.1f}", data_wait=f"{wait_share:.0%}")
    if run.log is not None:
        for tag, value in (("loss", loss), ("lr", lr), ("images_per_s", images_per_s), ("data_wait_share", wait_share)):
            run.log.scalar(f"train/{tag}", value, run.pos.step)
    if wait_share > DATA_WAIT_WARNING and run.dist_info.is_main and not run.throughput.warned_data_wait:
        run.throughput.warned_data_wait = True
        write(f"warning: the training step waited for data {wait_share:.0%} of the time; raise --num_workers "
              f"(now {run.args.num_workers}) or --cache_gb", error=True)
    run.throughput.add_window(images, seconds, window.wait_s)


def train_window_again(run: Run, window: Window, bar, loss: float) -> None:
    """The first NaN/inf window of a compiled run: back to the state where it began, its batches
    once more with eager blocks, and eager from then on; if the loss is NaN/inf again, the run
    stops as an eager run does (the fallback is disarmed: it never repeats)."""
    last = run.pos.step
    first = run.snapshot.restore(run.model, run.train_step, run.scheduler)
    run.snapshot = None
    run.step_fn, run.speed_settings = eager_from_now(run.train_step, run.speed_settings, run.model)
    if run.dist_info.is_main:
        write(f"note: the loss became {loss} with compiled blocks in steps {first + 1}-{last}; training them again "
              "with eager blocks, and eagerly from now on (--eager skips compiling)", error=True)
    run.pos.step, run.pos.done_in_epoch = first, run.pos.done_in_epoch - (last - first)
    again = Window()
    for batch in window.batches:
        one_step(run, batch, again)
    report(run, again, bar)


def one_step(run: Run, batch: dict, window: Window) -> None:
    device = run.dist_info.device
    if run.snapshot is not None and window.steps == 0:  # a compiled run can go back to where a window began
        run.snapshot.take(run.model, run.train_step, run.scheduler, run.pos.step)
        window.batches = []
    if window.batches is not None:
        window.batches.append(batch)
    lq = batch["lq"].to(device, non_blocking=True)
    gt = batch["gt"].to(device, non_blocking=True)
    embedding = None if run.table is None else run.table[batch["instruction_idx"].to(device, non_blocking=True)]
    run.last_batch = (lq, embedding)
    first = run.throughput.first_step_s is None
    t0 = time.perf_counter()
    if first:
        tried = run.speed_settings
        run.step_fn, loss, run.speed_settings = first_step(
            run.train_step, tried, run.model, lq, gt, embedding,
            restore=lambda: run.snapshot.restore(run.model, run.train_step, run.scheduler))
        if not run.speed_settings.compile:
            run.snapshot = None  # eager blocks: nothing to fall back from
    else:
        loss = run.step_fn(lq, gt, embedding)
    window.loss_sum = window.loss_sum + loss
    if first:
        log_first_step(run, t0, tried)
        run.clock.add_apart("first step", run.throughput.first_step_s)
        run.clock.start()  # the training clock counts every step after the first
    run.scheduler.step()
    window.steps += 1
    run.pos.step += 1
    run.pos.done_in_epoch += 1


def log_first_step(run: Run, t0: float, tried: SpeedSettings) -> None:
    """Say how long the first step (and compiling) took, and what trains from there on, as soon as
    it is done, whatever the progress interval: one host sync, once."""
    if run.dist_info.device.type == "cuda":
        torch.cuda.synchronize(run.dist_info.device)
    run.throughput.first_step_s = time.perf_counter() - t0
    if run.dist_info.is_main:
        write(first_step_line(run.throughput.first_step_s, tried, run.speed_settings))
        line = compile_line(run.compile_cache) if tried.compile else None
        if line:
            write(line)
