"""Train TextPromptIR (paper Sec. 4.1) on one CPU/GPU or many with torchrun.

    python train.py --stage text                      # fine-tune the instruction encoder
    python train.py                                   # train the restoration net (paper recipe)
    torchrun --nproc_per_node=8 train.py              # the same on 8 GPUs
    python train.py --preset demo --stage all         # the bundled demo, minutes on a CPU
    python train.py --stage classifier --resume CKPT  # add the degradation classifier to a checkpoint

The loop reads like nanoGPT's: ``build_run`` sets everything up, each step is one call of the
step function (``utils/train/step.py``, the unit that compile and CUDA graphs wrap), and the
host waits for the GPU only every ``--log_every`` steps (loss check and logging) and at saves.
When to stop and which ``--save_at`` checkpoints to keep is ``utils.train.budget.BudgetPolicy``'s.
"""
from __future__ import annotations

import contextlib
import signal
import sys
import time
from argparse import Namespace
from pathlib import Path
from typing import Sequence

import torch
from torch.nn.parallel import DistributedDataParallel

from net.model import TextPromptIR
from options import check_train_paths, model_config, train_options
from utils.cli import EXIT_INTERRUPTED, cli_main
from utils.data.check import check_training_data, print_report
from utils.errors import UserError, user_message
from utils.full_disk import DiskFull
from utils.progress import progress, write
from utils.runtime.allocator import retain_freed_memory
from utils.runtime.compile import compile_blocks, default_compile_cache, use_compile_cache
from utils.runtime.device import allow_tf32
from utils.stop_signals import StopSignals, exit_code
from utils.train import dist
from utils.train.budget import Apart, Budget, BudgetPolicy, StopReason, fraction_name, make_scheduler
from utils.train.classifier import add_classifier, classifier_stage
from utils.train.fallback import Snapshot
from utils.train.inputs import build_data, data_paths, load_text, run_text_stage
from utils.train.nan_guard import NonFiniteLoss
from utils.train.resume import Position, init_weights, resume
from utils.train.run import Run, Window, one_step, open_log, report, save
from utils.train.run_lock import claim_folders
from utils.train.speed import SpeedSettings, speed_settings
from utils.train.step import IDENTITY_FLOOR_DB, TrainStep, make_optimizer
from utils.train.validation import validate, validation_sets

SIGUSR1_NOTE = ("train.py saves last.pt on SIGUSR1 between the restoration stage's steps; there is nothing to "
                "save at this point, going on")


# ------------------------------------------------------------------ building a run
def run_speed_settings(args: Namespace, dist_info: dist.DistInfo) -> tuple[SpeedSettings, Path | None]:
    """What makes the step fast on this device (``utils.train.speed.speed_settings``) and, when blocks are
    compiled, the compile cache, checked writable before any other folder is made."""
    settings = speed_settings(dist_info.device, dist_info.world_size, args.compile, args.cuda_graph, args.eager,
                              args.precision)
    cache = None
    if settings.compile:
        cache = use_compile_cache(args.compile_cache or default_compile_cache(args.ckpt_dir), "--compile_cache")
    return settings, cache


def build_run(args: Namespace, dist_info: dist.DistInfo, settings: SpeedSettings, cache: Path | None) -> Run:
    """Text embeddings, data, network, optimizer and schedule, resume, compile / DDP, logging."""
    torch.manual_seed(args.seed)  # the same initial weights on every rank
    allow_tf32(dist_info.device)
    run_dir = Path(args.ckpt_dir) / args.name
    table, rows, val_embeddings, text_record, text_dim = None, None, None, None, 384
    if args.text_cond == "film":
        table, rows, val_embeddings, text_record = load_text(args, dist_info, run_dir)
        text_dim = int(table.shape[1])
        table = table.to(dist_info.device)
    dataset, loader, sampler, steps_per_epoch = build_data(args, dist_info, rows)
    model = TextPromptIR(model_config(args, text_dim), impl=args.impl, device=dist_info.device)
    optimizer = make_optimizer(model, args.lr, args.weight_decay, dist_info.device, settings.cuda_graph)
    budget = Budget(args.time_budget, args.warmup_epochs / args.epochs) if args.time_budget else None
    pos, scaler_state = Position(), None
    if args.resume:
        path = run_dir / "last.pt" if args.resume == "auto" else Path(args.resume)
        pos, scaler_state, scheduler, budget = resume(path, model, optimizer, steps_per_epoch, args, dist_info,
                                                      settings.cuda_graph)
    else:
        if args.init:
            init_weights(args.init, model, text_record, dist_info.is_main)
        scheduler = make_scheduler(optimizer, budget, args.warmup_epochs * steps_per_epoch,
                                   args.epochs * steps_per_epoch)
    net: torch.nn.Module = model
    if settings.compile:
        n = compile_blocks(model)
        if dist_info.is_main:
            print(f"torch.compile: {n} transformer blocks (compiled on first use); cache {cache}")
    if dist_info.distributed:
        net = DistributedDataParallel(model, device_ids=[dist_info.device.index] if dist_info.device.type == "cuda"
                                      else None)
    if dist_info.is_main:
        for note in settings.notes:
            print(note)
        print(settings.line(args.batch_size, dist_info.device))
    floor = IDENTITY_FLOOR_DB if args.identity_floor is None else args.identity_floor  # None: the loss's own
    step = TrainStep(net, optimizer, dist_info.device, settings.precision, args.grad_clip, args.loss, floor)
    if step.scaler is not None and scaler_state is not None:
        step.scaler.load_state_dict(scaler_state)
    policy = BudgetPolicy.start(budget, args.save_at, pos.step, args.epochs * steps_per_epoch)
    run = Run(args, dist_info, model, step, scheduler, loader, sampler, steps_per_epoch, table, val_embeddings,
              validation_sets(args), text_record, run_dir, pos, settings, policy, cache, step_fn=step,
              snapshot=Snapshot() if settings.compile else None)
    if dist_info.is_main:
        open_log(run, len(dataset))
    return run


# ------------------------------------------------------------------ the loop
def run_validation(run: Run) -> None:
    """Score the validation sets (``utils.train.validation``), timed apart from the training steps."""
    with Apart(run.clock, "validation"):
        validate(run.model, run.val_sets, run.val_embeddings, run.dist_info.device, run.args.precision,
                 run.args.val_max_images, run.log, run.pos.epoch)


def end_epoch(run: Run) -> None:
    """Save last.pt (and epoch_XXX.pt every --save_every epochs), validate every --val_every;
    none of it counts in a time budget."""
    args = run.args
    run.pos.epoch, run.pos.done_in_epoch = run.pos.epoch + 1, 0
    with Apart(run.clock, "saving"):
        save(run, run.run_dir / "last.pt")
        if args.save_every and run.pos.epoch % args.save_every == 0:
            save(run, run.run_dir / f"epoch_{run.pos.epoch:03d}.pt")
    if run.dist_info.is_main and run.val_sets and (run.pos.epoch % args.val_every == 0
                                                   or (run.policy.budget is None and run.pos.epoch == args.epochs)):
        run_validation(run)
    with Apart(run.clock, "waiting for the other processes"):
        dist.barrier()


def signal_stop(run: Run, signals: StopSignals) -> StopReason | None:
    """Between two steps, what every process agrees on from the signals any of them received:
    SIGUSR1 saves last.pt and training goes on; SIGINT or SIGTERM is the reason to stop."""
    stop, save_now = dist.max_over_ranks([signals.stop or 0, int(signals.take_save_request())], run.dist_info)
    if stop:
        return StopReason(signal.Signals(stop).name)
    if save_now:
        last = run.run_dir / "last.pt"
        with Apart(run.clock, "saving"):
            save(run, last)
        if run.dist_info.is_main:
            write(f"SIGUSR1: saved {last} (epoch {run.pos.epoch + 1}, step {run.pos.step}); training goes on")
    return None


def stop_after_step(run: Run, signals: StopSignals, check_time: bool) -> StopReason | None:
    """Why the run stops after this step, if it does: a signal, the time budget, or --max_steps; the
    --save_at checkpoints due now are written first."""
    stop = signal_stop(run, signals)
    if stop is None:
        stop, planned = run.policy.after_step(run.pos.step, check_time, run.optimizer, run.dist_info)
        if planned is not None:
            run.scheduler = planned
    if stop is None and run.args.max_steps and run.pos.step >= run.args.max_steps:
        stop = StopReason.MAX_STEPS
    for fraction in run.policy.due_fractions(run.pos.step, final=stop is not None and stop.by_budget):
        with Apart(run.clock, "saving"):
            save(run, run.run_dir / fraction_name(fraction))
    return stop


def train_loop(run: Run, signals: StopSignals) -> StopReason | None:
    """Train until --epochs, --max_steps, the time budget or a signal; returns why it stopped
    before --epochs (None: all epochs done)."""
    args = run.args
    stop = None
    while run.policy.budget is not None or run.pos.epoch < args.epochs:
        run.sampler.set_epoch(run.pos.epoch, skip=run.pos.done_in_epoch * args.batch_size)
        label = f"epoch {run.pos.epoch + 1}" + ("" if run.policy.budget else f"/{args.epochs}")
        bar = progress(run.steps_per_epoch, label, enabled=run.dist_info.is_main and not args.no_progress,
                       initial=run.pos.done_in_epoch)
        window, batches = Window(), iter(run.loader)
        while stop is None:
            t0 = time.perf_counter()
            batch = next(batches, None)
            if batch is None:
                break
            window.wait_s += time.perf_counter() - t0
            one_step(run, batch, window)
            bar.update(1)
            at_log = run.pos.step % args.log_every == 0
            if at_log:
                report(run, window, bar)
                window = Window()
            # the time is read every step on a CPU; on a GPU at log points, where the device is synchronised
            stop = stop_after_step(run, signals, check_time=at_log or run.dist_info.device.type != "cuda")
        report(run, window, bar)
        bar.close()
        if stop is not None:
            run.clock.pause()
            with Apart(run.clock, "saving"):
                save(run, run.run_dir / "last.pt")
            return stop
        end_epoch(run)
    return None


def stopped_line(run: Run, how: str) -> str:
    return (f"{how}: saved {run.run_dir / 'last.pt'} (epoch {run.pos.epoch + 1}, step {run.pos.step}); "
            "continue with --resume")


def nothing_to_do(run: Run) -> str | None:
    """The line saying a resumed run is already at --max_steps or at its time budget's last step."""
    args, pos, budget = run.args, run.pos, run.policy.budget
    if args.max_steps and pos.step >= args.max_steps:
        return (f"{pos.last_saved[0] if pos.last_saved else 'the run'} is at step {pos.step}, already at "
                f"--max_steps {args.max_steps}: nothing to do")
    if budget is not None and budget.planned and pos.step >= budget.total_steps:
        return f"{pos.last_saved[0]} is at step {pos.step}, the last of its time budget's plan: nothing to do"
    return None


def train_restoration(args: Namespace, dist_info: dist.DistInfo, settings: SpeedSettings, cache: Path | None,
                      signals: StopSignals) -> int:
    """Restoration training (stage "restoration"); on SIGINT / SIGTERM it ends the step, saves last.pt
    and returns 130 / 143."""
    run = build_run(args, dist_info, settings, cache)
    start_step, last, done = run.pos.step, run.run_dir / "last.pt", nothing_to_do(run)
    if done:
        print(done)
        return 0
    run.model.train()
    try:
        with signals.between_steps():
            stopped = train_loop(run, signals)
    except KeyboardInterrupt as e:  # not between two steps
        save(run, last)
        if dist_info.is_main:
            print("\n" + stopped_line(run, "interrupted"), file=sys.stderr)
        return getattr(e, "exit_code", EXIT_INTERRUPTED)
    except NonFiniteLoss:
        raise
    except DiskFull as e:  # no room for last.pt: the previous one is intact
        raise DiskFull(f"{e}; training stopped at step {run.pos.step}, continue it with --resume once there is "
                       "room") from None
    except UserError as e:  # e.g. an unreadable image met mid-epoch: keep the steps done so far
        if run.pos.step == start_step:
            raise
        save(run, last)
        raise UserError(f"{user_message(e)} (saved {last} at step {run.pos.step}: fix this and continue with "
                        "--resume)") from None
    finally:
        if run.log is not None:
            run.log.close()
    if signals.stop is not None:  # also one that came during the last save: nothing more is done
        stopped = StopReason(signal.Signals(signals.stop).name)
    return finish(run, stopped)


def finish(run: Run, stopped: StopReason | None) -> int:
    """The run's last lines (and, for a finished run, its degradation classifier); the exit code."""
    args, dist_info, policy, last = run.args, run.dist_info, run.policy, run.run_dir / "last.pt"
    if stopped is not None and stopped.by_signal:
        if dist_info.is_main:
            print("\n" + stopped_line(run, f"stopped by {stopped.value}"), file=sys.stderr)
        return exit_code(signal.Signals[stopped.value])
    if policy.budget is not None and stopped is not None and stopped.by_budget and run.val_sets and dist_info.is_main:
        run_validation(run)
    if dist_info.is_main:
        how = {StopReason.MAX_STEPS: f"stopped at --max_steps {args.max_steps}", StopReason.PLAN: "time budget done",
               StopReason.TIME: "time budget spent"}.get(stopped, "done")
        print(f"{how}: {last} (step {run.pos.step}){run.throughput.line(args.log_every)}")
        if policy.budget is not None:
            where = f"epoch {run.pos.epoch + 1} ({run.pos.done_in_epoch}/{run.steps_per_epoch} batches into it)"
            print(policy.how_far(run.pos.step, where, run.pos.step * args.batch_size * dist_info.world_size))
        unsaved = policy.unsaved_line(run.pos.step, stopped, args.max_steps)
        if unsaved:
            print(unsaved)
        if stopped is not StopReason.MAX_STEPS and args.classifier_steps:  # a finished run, not one cut short
            add_classifier(args, last, dist_info.device)
    return 0


# ------------------------------------------------------------------ main: the stages
def train_main(argv: Sequence[str] | None) -> int:
    args = train_options(argv)
    check_train_paths(args)
    if args.stage == "classifier" and not args.check_data:
        with StopSignals(SIGUSR1_NOTE):
            return classifier_stage(args)
    if args.check_data:
        root, task_dirs = data_paths(args)
        return print_report(check_training_data(root, args.de_type, task_dirs))
    retain_freed_memory()  # no page faults on big CPU tensors (utils/runtime/allocator.py)
    dist_info = dist.setup(args.device)
    try:
        with contextlib.ExitStack() as held:
            signals = held.enter_context(StopSignals(SIGUSR1_NOTE))
            settings, cache = run_speed_settings(args, dist_info) if args.stage != "text" else (None, None)
            if dist_info.is_main:
                claim_folders(args, held)
            if args.stage in ("text", "all"):
                if dist_info.is_main:
                    run_text_stage(args)
                dist.barrier()  # the other ranks read the encoder only once it is written
                if args.stage == "text":
                    return 0
            return train_restoration(args, dist_info, settings, cache, signals)
    finally:
        dist.cleanup()


def main(argv: Sequence[str] | None = None) -> int:
    return cli_main(train_main, argv)


if __name__ == "__main__":
    dist.end_process(main())
