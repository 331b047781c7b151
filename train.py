"""Train TextPromptIR (paper Sec. 4.1) on one CPU/GPU or many with torchrun.

    python train.py --stage text                      # fine-tune the instruction encoder
    python train.py                                   # train the restoration net (paper recipe)
    torchrun --nproc_per_node=8 train.py              # the same on 8 GPUs
    python train.py --preset demo --stage all         # the bundled demo, minutes on a CPU
    python train.py --stage classifier --resume CKPT  # add the degradation classifier to a checkpoint

The loop reads like nanoGPT's: ``build_run`` sets everything up, each step is one call of the
step function (``utils/train/step.py``, the unit that compile and CUDA graphs wrap), and the
host waits for the GPU only every ``--log_every`` steps (loss check and logging) and at saves.
"""
from __future__ import annotations

import contextlib
import math
import random
import signal
import sys
import time
from argparse import Namespace
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
import yaml
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from net.model import TextPromptIR, count_parameters
from options import check_train_paths, model_config, train_options
from utils.atomic import write_text
from utils.checkpoint import (
    CLASSIFIER_KEY,
    check_same_config,
    load_checkpoint,
    non_finite_tensors,
    remove_stale_temps,
    save_checkpoint,
)
from utils.cli import EXIT_INTERRUPTED, cli_main, writable_folders
from utils.data.sampler import EpochSampler
from utils.digest import weights_sha256
from utils.errors import UserError, user_message
from utils.full_disk import DiskFull, naming_full_disk
from utils.progress import progress, write
from utils.recipe import recipe_record
from utils.runtime.allocator import retain_freed_memory
from utils.runtime.compile import compile_blocks, compile_line, default_compile_cache, eager_blocks, use_compile_cache
from utils.runtime.device import allow_tf32, describe
from utils.stop_signals import StopSignals, exit_code, ignore_in_worker
from utils.tasks import TASKS, task_of
from utils.train import dist
from utils.train.budget import (
    MEASURE_SKIP,
    MEASURE_STEPS,
    Apart,
    BudgetPlan,
    TrainClock,
    fraction_name,
    fraction_steps,
    measuring_scheduler,
    plan_steps,
    planned_scheduler,
)
from utils.train.fallback import Snapshot, eager_from_now, first_step
from utils.train.schedulers import warmup_cosine
from utils.train.speed import SpeedPlan, first_step_line, plan_speed
from utils.train.step import TrainStep, finite_output, make_optimizer, match_lr_type
from utils.train.tensorboard_log import TensorBoardLog

SIGUSR1_NOTE = ("train.py saves last.pt on SIGUSR1 between the restoration stage's steps; there is nothing to "
                "save at this point, going on")
DATA_WAIT_WARNING = 0.10  # warn when the step waits for data this share of the time
CACHE_GB_MAX = 16.0


class NonFiniteLoss(UserError):
    pass


@dataclass
class Position:
    """Where a run stands; checkpoints store it and --resume restores it."""

    epoch: int = 0
    step: int = 0
    done_in_epoch: int = 0  # batches of the current epoch already trained on
    last_saved: tuple[Path, int] | None = None  # (path, step) of the newest good checkpoint


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


@dataclass
class Run:
    """Everything one training run holds; the loop's functions read it and advance ``pos``."""

    args: Namespace
    info: dist.DistInfo
    model: TextPromptIR
    train_step: TrainStep
    scheduler: Any
    loader: DataLoader
    sampler: EpochSampler
    steps_per_epoch: int
    table: torch.Tensor | None  # instruction embeddings of the bank, on the device
    val_text: dict[str, torch.Tensor] | None
    val_sets: list
    text_record: dict[str, Any] | None
    run_dir: Path
    pos: Position
    plan: SpeedPlan  # what the run uses: the start-up plan, less what failed (utils/train/fallback.py)
    compile_cache: Path | None = None
    log: TensorBoardLog | None = None  # rank 0's TensorBoard log
    step_fn: Callable | None = None  # train_step, or its CUDA graph once captured
    snapshot: Snapshot | None = None  # with compiled blocks: the state where the log window began
    last_batch: tuple[torch.Tensor, torch.Tensor | None] | None = None  # (input, embedding): the save check runs on it
    speed: Throughput = field(default_factory=Throughput)
    budget: BudgetPlan | None = None  # --time_budget's plan (utils/train/budget.py)
    clock: TrainClock = field(default_factory=TrainClock)
    start_step: int = 0  # the step this session started from
    measure_from_s: float = 0.0  # the training clock when the rate's timed steps began
    fraction_at: dict[float, int] = field(default_factory=dict)  # --save_at fraction -> its step
    fractions_saved: set[float] = field(default_factory=set)

    @property
    def optimizer(self) -> torch.optim.Optimizer:
        return self.train_step.optimizer


# ------------------------------------------------------------------ text stage
def run_text_stage(args: Namespace) -> None:
    """Fine-tune the instruction encoder on the instruction bank (Sec. 3.1)."""
    from utils.text.finetune import finetune_text_encoder

    extra = {k: v for k, v in dict(epochs=args.text_epochs, lr=args.text_lr).items() if v is not None}
    res = finetune_text_encoder(args.text_encoder, args.text_ckpt, batch_size=args.text_batch_size,
                                pooling=args.pooling, seed=args.seed, bank_root=args.bank_root,
                                overwrite=args.overwrite, **extra)
    if not res["reused"]:
        print(f"text encoder saved to {args.text_ckpt} (validation accuracy {res['val_accuracy']:.3f})")


def load_text(args: Namespace, info: dist.DistInfo, run_dir: Path):
    """What restoration training takes from the frozen, fine-tuned encoder (Sec. 3.1): the
    embeddings of the training bank (the Dataset only indexes rows), each task's fixed validation
    instruction, and the record of the encoder a checkpoint keeps."""
    from utils.text.embeddings import training_embeddings
    from utils.text.encoder_link import encoder_record

    if info.is_main:  # rank 0 computes and stores them if needed; the others then read them
        cache = training_embeddings(args.text_ckpt, args.bank_root)
    dist.barrier()
    if not info.is_main:
        cache = training_embeddings(args.text_ckpt, args.bank_root)
    return cache["table"], cache["rows"], cache["defaults"], encoder_record(cache, args.text_ckpt, run_dir)


# ------------------------------------------------------------------ building a run
def data_paths(args: Namespace) -> tuple[str, dict[str, str]]:
    """(training root, task folders overriding root/<Task>). ``--clean_images`` (``--preset dev``) trains
    on a folder of clean images, which ``--data_root`` must name; ``--denoise_root`` is one the denoising
    tasks take."""
    if not args.clean_images:
        return args.data_root, {} if args.denoise_root is None else {"denoise": args.denoise_root}
    if args.data_root is None:
        raise UserError("--preset dev (--clean_images) trains on a folder of clean images: pass --data_root <folder>")
    return args.data_root, {"denoise": args.data_root}


def cache_budget(args: Namespace) -> int:
    """Bytes of decoded images to keep: --cache_gb, or a quarter of the available memory (≤16 GiB)."""
    if args.cache_gb is not None:
        return int(max(args.cache_gb, 0) * 2**30)
    from utils.runtime.tiling import available_memory_bytes

    return int(min(available_memory_bytes() / 4, CACHE_GB_MAX * 2**30))


def build_data(args: Namespace, info: dist.DistInfo, rows: dict | None):
    """The training set, its distributed sampler and loader, and the steps per epoch."""
    from utils.data.train_set import TrainDataset

    root, task_dirs = data_paths(args)
    dataset = TrainDataset(root, args.de_type, patch_size=args.patch_size, repeats=dict(args.repeat) or None,
                           instruction_rows=rows, list_dir=args.list_dir, seed=args.seed, task_dirs=task_dirs,
                           synthetic=args.synthesize, channel_shuffle=args.channel_shuffle,
                           max_pixels=args.max_pixels, identity_share=args.identity_share)
    steps_per_epoch = len(dataset) // info.world_size // args.batch_size
    if steps_per_epoch == 0:
        raise UserError(f"{root}: {len(dataset)} training samples are fewer than one batch of "
                        f"{args.batch_size} per process; add data, --repeat or lower --batch_size")
    cached, nbytes = dataset.preload(cache_budget(args))
    workers = args.num_workers
    sampler = EpochSampler(len(dataset), info.rank, info.world_size, seed=args.seed)
    loader = DataLoader(dataset, batch_size=args.batch_size, sampler=sampler, drop_last=True, num_workers=workers,
                        pin_memory=info.device.type == "cuda", persistent_workers=workers > 0,
                        prefetch_factor=4 if workers > 0 else None, worker_init_fn=ignore_in_worker)
    if info.is_main:
        print(dataset.summary())
        print(f"decoded once and kept in memory: {cached} images ({nbytes / 2**30:.2f} GiB)")
    return dataset, loader, sampler, steps_per_epoch


def folders_to_write(args: Namespace) -> list[tuple[Path, str, str]]:
    """Every folder this run writes, with the option that names it and what goes there: all are
    checked to be writable before any work, so a folder a new feature writes belongs here."""
    folders = []
    if args.stage in ("text", "all"):
        folders.append((Path(args.text_ckpt), "--text_ckpt", "the instruction encoder"))
    if args.stage != "text":
        folders += [(Path(args.ckpt_dir) / args.name, "--ckpt_dir or --name", "checkpoints"),
                    (Path(args.log_dir) / args.name, "--log_dir", "logs")]
        if args.text_cond == "film" and Path(args.text_ckpt).is_dir():  # a missing encoder is named later
            folders.append((Path(args.text_ckpt), "--text_ckpt with a writable copy of the encoder folder",
                            "the record of the checkpoints trained with this encoder"))
    return folders


def prepare_run_dir(args: Namespace, run_dir: Path) -> None:
    """Refuse to replace another run's checkpoints unless told to; clear half-written saves. A
    run continues in its own folder (``--resume``, or a checkpoint of that folder); resuming
    another run's checkpoint into a folder that holds one replaces it only with --overwrite."""
    existing = sorted(run_dir.glob("*.pt"))
    own = args.resume == "auto" or (args.resume is not None and Path(args.resume).resolve().parent == run_dir.resolve())
    if existing and not own and not args.overwrite:
        shown = existing[0] if (run_dir / "last.pt") not in existing else run_dir / "last.pt"
        try:
            ck = torch.load(shown, map_location="cpu", weights_only=True, mmap=True)
            what = f" (epoch {ck.get('epoch', '?')}, step {ck.get('step', '?')})"
        except Exception:  # unreadable: the refusal stands, without the detail
            what = ""
        if args.resume:
            raise UserError(f"{shown}: --resume {args.resume} continues another run, and the run named "
                            f"{args.name!r} already has a checkpoint{what} that it would replace; pass a new "
                            "--name, or replace it with --overwrite")
        raise UserError(f"{shown}: a run named {args.name!r} already has a checkpoint{what}; continue it with "
                        "--resume, start another with --name NEW, or replace it with --overwrite")
    remove_stale_temps(run_dir)


def claim_folders(args: Namespace, stack: contextlib.ExitStack) -> None:
    """Before any work (rank 0): every folder the run writes is writable, no other live run uses
    this run's folder (a lock held until the run ends), and no checkpoint is replaced unasked."""
    from utils.train.run_lock import RunLock, describe_holder

    writable_folders(folders_to_write(args))
    if args.stage == "text":
        return
    run_dir = Path(args.ckpt_dir) / args.name
    lock = stack.enter_context(RunLock(run_dir, hint="wait for it to end, or pass another --name"))
    if lock.stale:
        print(f"note: {run_dir}: the run that held it ({describe_holder(lock.stale)}) ended without releasing it; "
              "taking it over", file=sys.stderr)
    prepare_run_dir(args, run_dir)


def plan_run_speed(args: Namespace, info: dist.DistInfo) -> tuple[SpeedPlan, Path | None]:
    """What makes the step fast on this device (``utils.train.speed.plan_speed``) and, when blocks are
    compiled, the compile cache, checked writable before any other folder is made."""
    plan = plan_speed(info.device, info.world_size, args.compile, args.cuda_graph, args.eager, args.precision)
    cache = None
    if plan.compile:
        cache = use_compile_cache(args.compile_cache or default_compile_cache(args.ckpt_dir), "--compile_cache")
    return plan, cache


def build_run(args: Namespace, info: dist.DistInfo, plan: SpeedPlan, cache: Path | None) -> Run:
    """Text embeddings, data, network, optimizer and schedule, resume, compile / DDP, logging."""
    torch.manual_seed(args.seed)  # the same initial weights on every rank
    allow_tf32(info.device)
    run_dir = Path(args.ckpt_dir) / args.name
    table, rows, val_text, text_record, text_dim = None, None, None, None, 384
    if args.text_cond == "film":
        table, rows, val_text, text_record = load_text(args, info, run_dir)
        text_dim = int(table.shape[1])
        table = table.to(info.device)
    dataset, loader, sampler, steps_per_epoch = build_data(args, info, rows)
    model = TextPromptIR(model_config(args, text_dim), impl=args.impl, device=info.device)
    graphed = plan.cuda_graph
    optimizer = make_optimizer(model, args.lr, args.weight_decay, info.device, graphed)
    budget = BudgetPlan(args.time_budget, args.warmup_epochs / args.epochs) if args.time_budget else None
    pos, scaler_state = Position(), None
    if args.resume:
        path = run_dir / "last.pt" if args.resume == "auto" else Path(args.resume)
        pos, scaler_state, scheduler, budget = resume(path, model, optimizer, steps_per_epoch, args, info, graphed)
    else:
        if args.init:
            init_weights(args.init, model, text_record, info.is_main)
        scheduler = make_scheduler(args, optimizer, steps_per_epoch, budget)
    net: torch.nn.Module = model
    if plan.compile:
        n = compile_blocks(model)
        if info.is_main:
            print(f"torch.compile: {n} transformer blocks (compiled on first use); cache {cache}")
    if info.distributed:
        net = DistributedDataParallel(model, device_ids=[info.device.index] if info.device.type == "cuda" else None)
    if info.is_main:
        for note in plan.notes:
            print(note)
        print(plan.line(args.batch_size, info.device))
    step = TrainStep(net, optimizer, info.device, plan.precision, args.grad_clip, args.loss)
    if step.scaler is not None and scaler_state is not None:
        step.scaler.load_state_dict(scaler_state)
    run = Run(args, info, model, step, scheduler, loader, sampler, steps_per_epoch, table, val_text,
              validation_sets(args), text_record, run_dir, pos, plan, cache, step_fn=step,
              snapshot=Snapshot() if plan.compile else None,
              budget=budget, start_step=pos.step)
    if args.save_at and (budget is None or budget.planned):
        run.fraction_at = fraction_steps(args.save_at, budget.total_steps if budget else args.epochs * steps_per_epoch)
    if info.is_main:
        open_log(run, dataset)
    return run


def make_scheduler(args: Namespace, optimizer: torch.optim.Optimizer, steps_per_epoch: int,
                   budget: BudgetPlan | None) -> Any:
    """The paper's warm-up and cosine (Sec. 4.1) over --epochs, or over the steps a time budget
    allows once they are measured (``utils.train.budget``)."""
    if budget is None:
        return warmup_cosine(optimizer, args.warmup_epochs * steps_per_epoch, args.epochs * steps_per_epoch)
    return planned_scheduler(optimizer, budget) if budget.planned else measuring_scheduler(optimizer)


def resumed_budget(path: Path, ckpt: dict[str, Any], args: Namespace, is_main: bool) -> BudgetPlan | None:
    """The time budget a resumed run continues: the checkpoint's plan is kept (a --time_budget that
    differs is ignored, with a note); a run planned for --epochs cannot take one."""
    stored = ckpt.get("budget")
    if stored is None:
        if args.time_budget:
            raise UserError(f"{path}: this run's schedule was planned for --epochs, not a time budget; resume it "
                            "without --time_budget, or start a new run (--name NEW) with --time_budget")
        return None
    budget = BudgetPlan.from_dict(stored)
    if is_main:
        if args.time_budget and args.time_budget != budget.minutes:
            print(f"note: --time_budget {args.time_budget:g} ignored: the run keeps its plan for "
                  f"{budget.minutes:g} minutes", file=sys.stderr)
        left = max(budget.budget_s - budget.trained_s, 0.0)
        planned = (f"planned for {budget.total_steps} steps, {budget.total_steps - ckpt['step']} to go" if budget.planned
                   else "its step rate not yet measured")
        print(f"time budget {budget.minutes:g} min: {budget.trained_s:.1f} s trained, {left:.1f} s left; {planned}")
    return budget


def resume(path: Path, model: TextPromptIR, optimizer: torch.optim.Optimizer, steps_per_epoch: int, args: Namespace,
           info: dist.DistInfo, graphed: bool) -> tuple[Position, dict | None, Any, BudgetPlan | None]:
    """Continue ``path`` exactly where it stopped: weights, optimizer, schedule, position, RNG;
    returns the position, the fp16 gradient scaler's state (None if it had none), the schedule
    and the time budget (None if the run has none)."""
    if not path.is_file():
        raise UserError(f"{path}: no checkpoint to resume; start the run without --resume, or give "
                        "--resume the path of a checkpoint")
    ckpt = load_checkpoint(path)
    check_same_config(path, ckpt, model.config)
    model.load_state_dict(ckpt["model"])
    budget = resumed_budget(path, ckpt, args, info.is_main)
    scheduler = make_scheduler(args, optimizer, steps_per_epoch, budget)  # before the optimizer's state: it sets the lr
    optimizer.load_state_dict(ckpt["optimizer"])
    match_lr_type(optimizer, info.device, graphed)
    scheduler.load_state_dict(ckpt["scheduler"])
    set_rng_state(ckpt["rng"])
    pos = Position(ckpt["epoch"], ckpt["step"], ckpt["batches_done_in_epoch"], (path, ckpt["step"]))
    before = (ckpt.get("options") or {}).get("batch_size")
    if info.is_main:
        print(f"resumed {path} at epoch {pos.epoch + 1}, step {pos.step}")
        if before is not None and before != args.batch_size:
            print(f"warning: --batch_size {args.batch_size} differs from the checkpoint's {before}: "
                  "steps per epoch and the learning-rate schedule's length change with it", file=sys.stderr)
    return pos, ckpt.get("scaler"), scheduler, budget


def init_weights(source: str, model: TextPromptIR, text_record: dict | None, is_main: bool) -> None:
    """Start from the weights of a release folder or checkpoint (``--init``): same network config
    required; the optimizer, schedule and position start afresh (fine-tuning)."""
    ckpt = load_checkpoint(source)
    check_same_config(source, ckpt, model.config)
    model.load_state_dict(ckpt["model"])
    if is_main:
        print(f"initialised from {source} (weights sha256 {weights_sha256(ckpt['model'])[:12]})")
        theirs = (ckpt.get("text_encoder") or {}).get("fingerprint")
        if text_record and theirs and theirs != text_record.get("fingerprint"):
            print(f"warning: {source} was trained with another instruction encoder than --text_ckpt's; its text "
                  "conditioning starts from embeddings it has not seen", file=sys.stderr)


def validation_sets(args: Namespace) -> list:
    """The test-layout sets of --val_root for the tasks this run trains; with ``--clean_images`` it may
    also be one folder of clean images (e.g. Kodak24), validated as a denoising set."""
    from utils.data.layouts import EXPECTED_TEST_LAYOUT
    from utils.eval.benchmarks import find_test_sets

    if not args.val_every or not args.val_root:
        return []
    root = Path(args.val_root)
    clean_folder = args.clean_images and not any((root / task).is_dir() for task in TASKS)
    sets, _ = find_test_sets(None if clean_folder else root, "all", report_missing=False,
                             denoise_dirs=[root] if clean_folder else (), max_pixels=args.max_pixels)
    trained = {task_of(d) for d in args.de_type}
    sets = [s for s in sets if s.task in trained]  # composite sets and untrained tasks are test.py's to score
    if not sets:
        raise UserError(f"--val_root {args.val_root}: no test set found there; expected {EXPECTED_TEST_LAYOUT}, "
                        "or pass --val_every 0 to train without validation")
    return sets


def open_log(run: Run, dataset) -> None:
    """TensorBoard log, the run's recipe beside logs and checkpoints, one summary line; a folder
    without room for them is a one-line error."""
    args, info = run.args, run.info
    log_dir = Path(args.log_dir) / args.name
    run.log = TensorBoardLog(log_dir)
    resolved = recipe_record(args)  # the recipe only: --config <this file> repeats the run
    for folder, option in ((log_dir, "--log_dir"), (run.run_dir, "--ckpt_dir")):
        with naming_full_disk(folder, "options.yaml", f"free some space there or pass another {option}"):
            # the run's own: replaced whole, as a resumed run writes it again
            write_text(folder / "options.yaml", yaml.safe_dump(resolved, sort_keys=False), replace=True)
    if run.text_record is not None:
        from utils.text.encoder_link import register_dependent

        with naming_full_disk(Path(args.text_ckpt), "the record of the checkpoints trained with this encoder",
                              "free some space there"):
            register_dependent(args.text_ckpt, run.run_dir / "last.pt")
    print(f"TextPromptIR: {count_parameters(run.model) / 1e6:.2f}M parameters, "
          f"{describe(run.model, info.device, args.precision)}; {len(dataset)} samples, "
          f"{run.steps_per_epoch} steps/epoch x {args.epochs} epochs on {info.world_size} x {info.device}")


# ------------------------------------------------------------------ state, saving
def rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "python": random.getstate(),
             "numpy": torch.from_numpy(np.random.get_state()[1].astype(np.int64))}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    np.random.set_state(("MT19937", state["numpy"].numpy().astype(np.uint32), 624))
    if torch.cuda.is_available() and "cuda" in state:
        torch.cuda.set_rng_state_all(state["cuda"])


def last_good(run: Run) -> str:
    if run.pos.last_saved is None:
        before = run.run_dir / "last.pt"
        return (f"this run saved nothing and {before} is still the one that was there before" if before.is_file()
                else "this run has no checkpoint yet")
    path, step = run.pos.last_saved
    return f"the last good checkpoint is {path} (step {step})"


def stop_non_finite(run: Run, what: str) -> NonFiniteLoss:
    """The error for a run whose loss or weights became NaN/inf: nothing is saved."""
    advice = "lower --lr" + (" or use --precision fp32" if run.train_step.precision != "fp32" else "")
    return NonFiniteLoss(f"{what} at epoch {run.pos.epoch + 1}, step {run.pos.step}; stopped without saving, "
                         f"{last_good(run)}; {advice}")


def check_weights(run: Run) -> None:
    """Stop (on every rank) unless the weights are finite and give a finite output on the last
    training batch: huge but finite weights can make every output NaN."""
    bad = non_finite_tensors(run.model.state_dict())
    if bad:
        raise stop_non_finite(run, f"the weights became NaN/inf ({bad[0]})")
    if run.last_batch is not None:
        lq, text = run.last_batch
        finite = finite_output(run.model, lq, text, run.info.device, run.train_step.precision)
        if not dist.all_true(finite):
            raise stop_non_finite(run, "the weights give NaN/inf outputs")


def trained_s(run: Run) -> float:
    """Seconds spent in training steps: this session's and, under a time budget, the earlier ones'."""
    return (run.budget.trained_s if run.budget else 0.0) + run.clock.elapsed()


def save(run: Run, path: Path) -> None:
    """Write a checkpoint (rank 0) of weights that :func:`check_weights` passed: no checkpoint
    that gives NaN/inf is ever written."""
    check_weights(run)
    if not run.info.is_main:
        return
    options = {k: (v if isinstance(v, (int, float, str, bool, type(None))) else str(v)) for k, v in vars(run.args).items()}
    save_checkpoint(path, dict(
        model=run.model.state_dict(), config=run.model.config.to_dict(), optimizer=run.optimizer.state_dict(),
        scheduler=run.scheduler.state_dict(), epoch=run.pos.epoch, step=run.pos.step,
        batches_done_in_epoch=run.pos.done_in_epoch, rng=rng_state(), text_encoder=run.text_record, options=options,
        speed=run.plan.record(),
        **({} if run.train_step.scaler is None else {"scaler": run.train_step.scaler.state_dict()}),
        **({} if run.budget is None else {"budget": {**run.budget.to_dict(), "trained_s": trained_s(run)}})))
    remove_stale_temps(path.parent)
    if path.name == "last.pt":
        run.pos.last_saved = (path, run.pos.step)


# ------------------------------------------------------------------ the loop
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
        raise stop_non_finite(run, f"the loss became {loss}")
    seconds = max(time.perf_counter() - window.start, 1e-9)
    images_per_s = window.steps * run.args.batch_size * run.info.world_size / seconds
    wait_share = window.wait_s / seconds
    lr = float(run.scheduler.get_last_lr()[0])
    bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}", img_s=f"{images_per_s:.1f}", data_wait=f"{wait_share:.0%}")
    if run.log is not None:
        for tag, value in (("loss", loss), ("lr", lr), ("images_per_s", images_per_s), ("data_wait_share", wait_share)):
            run.log.scalar(f"train/{tag}", value, run.pos.step)
    if wait_share > DATA_WAIT_WARNING and run.info.is_main and not run.speed.warned_data_wait:
        run.speed.warned_data_wait = True
        write(f"warning: the training step waited for data {wait_share:.0%} of the time; raise --num_workers "
              f"(now {run.args.num_workers}) or --cache_gb", error=True)
    if not run.speed.past_first_window:  # compile, graph capture, worker start-up: not steady state
        run.speed.past_first_window = True
        return
    run.speed.steady_images += window.steps * run.args.batch_size * run.info.world_size
    run.speed.steady_seconds += seconds
    run.speed.steady_wait_s += window.wait_s


def train_window_again(run: Run, window: Window, bar, loss: float) -> None:
    """The first NaN/inf window of a compiled run: back to the state where it began, its batches
    once more with eager blocks, and eager from then on; if the loss is NaN/inf again, the run
    stops as an eager run does (the fallback is disarmed: it never repeats)."""
    last = run.pos.step
    first = run.snapshot.restore(run.model, run.train_step, run.scheduler)
    run.snapshot = None
    run.step_fn, run.plan = eager_from_now(run.train_step, run.plan, run.model)
    if run.info.is_main:
        write(f"note: the loss became {loss} with compiled blocks in steps {first + 1}-{last}; training them again "
              "with eager blocks, and eagerly from now on (--eager skips compiling)", error=True)
    run.pos.step, run.pos.done_in_epoch = first, run.pos.done_in_epoch - (last - first)
    again = Window()
    for batch in window.batches:
        one_step(run, batch, again)
    report(run, again, bar)


def one_step(run: Run, batch: dict, window: Window) -> None:
    device = run.info.device
    if run.snapshot is not None and window.steps == 0:  # a compiled run can go back to where a window began
        run.snapshot.take(run.model, run.train_step, run.scheduler, run.pos.step)
        window.batches = []
    if window.batches is not None:
        window.batches.append(batch)
    lq = batch["lq"].to(device, non_blocking=True)
    gt = batch["gt"].to(device, non_blocking=True)
    text = None if run.table is None else run.table[batch["instruction_idx"].to(device, non_blocking=True)]
    run.last_batch = (lq, text)
    first = run.speed.first_step_s is None
    t0 = time.perf_counter()
    if first:
        tried = run.plan
        run.step_fn, loss, run.plan = first_step(
            run.train_step, tried, run.model, lq, gt, text,
            restore=lambda: run.snapshot.restore(run.model, run.train_step, run.scheduler))
        if not run.plan.compile:
            run.snapshot = None  # eager blocks: nothing to fall back from
    else:
        loss = run.step_fn(lq, gt, text)
    window.loss_sum = window.loss_sum + loss
    if first:
        log_first_step(run, t0, tried)
        run.clock.add_apart("first step", run.speed.first_step_s)
        run.clock.start()  # the training clock counts every step after the first
    run.scheduler.step()
    window.steps += 1
    run.pos.step += 1
    run.pos.done_in_epoch += 1


def log_first_step(run: Run, t0: float, tried: SpeedPlan) -> None:
    """Say how long the first step (and compiling) took, and what trains from there on, as soon as
    it is done, whatever the progress interval: one host sync, once."""
    if run.info.device.type == "cuda":
        torch.cuda.synchronize(run.info.device)
    run.speed.first_step_s = time.perf_counter() - t0
    if run.info.is_main:
        write(first_step_line(run.speed.first_step_s, tried, run.plan))
        line = compile_line(run.compile_cache) if tried.compile else None
        if line:
            write(line)


def end_epoch(run: Run) -> None:
    """Save last.pt (and epoch_XXX.pt every --save_every epochs), validate every --val_every;
    none of it counts in a time budget."""
    args = run.args
    run.pos.epoch, run.pos.done_in_epoch = run.pos.epoch + 1, 0
    with Apart(run.clock, "saving"):
        save(run, run.run_dir / "last.pt")
        if args.save_every and run.pos.epoch % args.save_every == 0:
            save(run, run.run_dir / f"epoch_{run.pos.epoch:03d}.pt")
    if run.info.is_main and run.val_sets and (run.pos.epoch % args.val_every == 0
                                              or (run.budget is None and run.pos.epoch == args.epochs)):
        validate(run)
    with Apart(run.clock, "waiting for the other processes"):
        dist.barrier()


def sync(run: Run) -> None:
    if run.info.device.type == "cuda":
        torch.cuda.synchronize(run.info.device)


def plan_budget(run: Run) -> None:
    """At the end of the measuring phase: the seconds per step (mean over the processes), the
    steps the budget allows, the schedule for them and the --save_at steps."""
    budget = run.budget
    step_s = (run.clock.elapsed() - run.measure_from_s) / MEASURE_STEPS
    step_s = float(dist.all_reduce_mean(torch.tensor(step_s, dtype=torch.float64, device=run.info.device)))
    plan_steps(budget, run.pos.step, trained_s(run), step_s)
    run.scheduler = planned_scheduler(run.optimizer, budget, run.pos.step)
    if run.args.save_at:
        run.fraction_at = fraction_steps(run.args.save_at, budget.total_steps)
    if run.info.is_main:
        write(f"time budget {budget.minutes:g} min: {step_s * 1e3:.1f} ms per step measured over {MEASURE_STEPS} "
              f"steps; schedule planned for {budget.total_steps} steps (warm-up {budget.warmup_steps})")


def budget_stop(run: Run, check_time: bool) -> str | None:
    """After each step: measure the rate and plan (at fixed steps, so every process plans alike),
    and the reason to stop, if any: "plan" (its last step) or "time" (when ``check_time``, by every
    process together)."""
    budget = run.budget
    if budget is None:
        return None
    done = run.pos.step - run.start_step
    if not budget.planned and done in (1 + MEASURE_SKIP, 1 + MEASURE_SKIP + MEASURE_STEPS):
        sync(run)
        if done == 1 + MEASURE_SKIP:
            run.measure_from_s = run.clock.elapsed()
        else:
            plan_budget(run)
    if budget.planned and run.pos.step >= budget.total_steps:
        return "plan"
    if check_time and not dist.all_true(trained_s(run) < budget.budget_s):
        return "time"
    return None


def save_fractions(run: Run, final: bool = False) -> None:
    """Keep ``at_<f>.pt`` when the step of a --save_at fraction is reached (``final``: the end of a
    time budget stands for fraction 1, also when the time ran out a few steps before the plan)."""
    for fraction in run.args.save_at or ():
        step = run.fraction_at.get(fraction)  # None: a time budget not yet planned
        due = (step is not None and run.start_step < step <= run.pos.step) or (final and fraction == 1)
        if due and fraction not in run.fractions_saved:
            run.fractions_saved.add(fraction)
            with Apart(run.clock, "saving"):
                save(run, run.run_dir / fraction_name(fraction))


def unsaved_fractions_line(run: Run, stopped: str | None) -> str | None:
    """One line naming the --save_at checkpoints this session should have reached but did not write,
    and why (those an earlier session passed are not counted)."""
    missed = [f for f in run.args.save_at or () if f not in run.fractions_saved
              and not (f in run.fraction_at and run.fraction_at[f] <= run.start_step)]
    if not missed:
        return None
    names = ", ".join(fraction_name(f) for f in missed)
    if run.budget is not None and not run.budget.planned:
        return (f"--save_at: {names} not written: the time budget ran out after {run.pos.step} steps, before the "
                f"step rate was measured ({1 + MEASURE_SKIP + MEASURE_STEPS} steps), so the steps of those fractions "
                "were never planned; give the run a longer --time_budget")
    steps = ", ".join(str(run.fraction_at[f]) for f in missed)
    if stopped == "max_steps":
        return (f"--save_at: {names} not written: the run stopped at --max_steps {run.args.max_steps}, before "
                f"their steps ({steps}); continue it with --resume and a higher --max_steps to reach them")
    why = "the time budget ran out" if stopped == "time" else "the run ended"
    return f"--save_at: {names} not written: {why} at step {run.pos.step}, before their steps ({steps})"


def signal_stop(run: Run, signals: StopSignals) -> str | None:
    """Between two steps, what every process agrees on from the signals any of them received:
    SIGUSR1 saves last.pt and training goes on; SIGINT or SIGTERM is the reason to stop (its name)."""
    stop, save_now = dist.max_over_ranks([signals.stop or 0, int(signals.take_save_request())], run.info)
    if stop:
        return signal.Signals(stop).name
    if save_now:
        last = run.run_dir / "last.pt"
        with Apart(run.clock, "saving"):
            save(run, last)
        if run.info.is_main:
            write(f"SIGUSR1: saved {last} (epoch {run.pos.epoch + 1}, step {run.pos.step}); training goes on")
    return None


def train_loop(run: Run, signals: StopSignals) -> str | None:
    """Train until --epochs, --max_steps, the time budget or a signal; returns why it stopped
    before --epochs: "max_steps", "plan", "time", "SIGINT" or "SIGTERM" (None: all epochs done)."""
    args = run.args
    stop = None
    while run.budget is not None or run.pos.epoch < args.epochs:
        run.sampler.set_epoch(run.pos.epoch, skip=run.pos.done_in_epoch * args.batch_size)
        label = f"epoch {run.pos.epoch + 1}" + ("" if run.budget else f"/{args.epochs}")
        bar = progress(run.steps_per_epoch, label, enabled=run.info.is_main and not args.no_progress,
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
            check_time = at_log or run.info.device.type != "cuda"
            stop = (signal_stop(run, signals) or budget_stop(run, check_time)
                    or ("max_steps" if args.max_steps and run.pos.step >= args.max_steps else None))
            save_fractions(run, final=stop in ("plan", "time"))
        report(run, window, bar)
        bar.close()
        if stop is not None:
            run.clock.pause()
            with Apart(run.clock, "saving"):
                save(run, run.run_dir / "last.pt")
            return stop
        end_epoch(run)
    return None


@torch.no_grad()
def validate(run: Run) -> None:
    """Score the validation sets with the blocks run eagerly: compiled blocks would compile anew
    for every image size. Timed apart from the training steps."""
    with Apart(run.clock, "validation"), eager_blocks():
        validate_sets(run)
    run.model.train()


def validate_sets(run: Run) -> None:
    from utils.eval.evaluate import evaluate_set

    for test_set in run.val_sets:
        text = None if run.val_text is None else run.val_text[test_set.task]
        score, preview = evaluate_set(run.model, test_set, text, run.info.device, precision=run.args.precision,
                                      max_images=run.args.val_max_images, progress=False)
        summary = score.summary()
        write(f"  val {summary['label']}: PSNR {summary['psnr']:.2f} dB (input {summary['input_psnr']:.2f})")
        if run.log is not None:
            tag = summary["label"].replace(" ", "_")
            run.log.scalar(f"val_psnr/{tag}", summary["psnr"], run.pos.epoch)
            run.log.image(f"val/{tag}", np.concatenate(preview, axis=1), run.pos.epoch)


def stopped_line(run: Run, how: str) -> str:
    return (f"{how}: saved {run.run_dir / 'last.pt'} (epoch {run.pos.epoch + 1}, step {run.pos.step}); "
            "continue with --resume")


def train_restoration(args: Namespace, info: dist.DistInfo, plan: SpeedPlan, cache: Path | None,
                      signals: StopSignals) -> int:
    """Restoration training (stage "restoration"); on SIGINT / SIGTERM it ends the step, saves last.pt
    and returns 130 / 143."""
    run = build_run(args, info, plan, cache)
    start_step = run.pos.step
    if args.max_steps and run.pos.step >= args.max_steps:
        print(f"{run.pos.last_saved[0] if run.pos.last_saved else 'the run'} is at step {run.pos.step}, "
              f"already at --max_steps {args.max_steps}: nothing to do")
        return 0
    if run.budget is not None and run.budget.planned and run.pos.step >= run.budget.total_steps:
        print(f"{run.pos.last_saved[0]} is at step {run.pos.step}, the last of its time budget's plan: nothing to do")
        return 0
    run.model.train()
    last = run.run_dir / "last.pt"
    try:
        with signals.between_steps():
            stopped = train_loop(run, signals)
    except KeyboardInterrupt as e:  # not between two steps
        save(run, last)
        if info.is_main:
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
        stopped = signal.Signals(signals.stop).name
    if stopped in ("SIGINT", "SIGTERM"):
        if info.is_main:
            print("\n" + stopped_line(run, f"stopped by {stopped}"), file=sys.stderr)
        return exit_code(signal.Signals[stopped])
    if run.budget is not None and stopped in ("plan", "time") and run.val_sets and info.is_main:
        validate(run)
    if info.is_main:
        how = {"max_steps": f"stopped at --max_steps {args.max_steps}", "plan": "time budget done",
               "time": "time budget spent"}.get(stopped, "done")
        print(f"{how}: {last} (step {run.pos.step}){throughput(run)}")
        if run.budget is not None:
            print(how_far(run))
        unsaved = unsaved_fractions_line(run, stopped)
        if unsaved:
            print(unsaved)
        if stopped != "max_steps" and args.classifier_steps:  # a finished run, not one cut short
            add_classifier(args, last, info.device)
    return 0


# ------------------------------------------------------------------ the degradation classifier
def add_classifier(args: Namespace, path: Path, device: torch.device) -> None:
    """Train the degradation classifier on the run's training data (``utils/train/classifier.py``)
    and store it in the checkpoint ``path``, rewritten atomically with everything else unchanged."""
    from utils.data.classifier_samples import find_sources
    from utils.train.classifier import ClassifierRecipe, classifier_record, train_classifier

    tasks = {task_of(d) for d in args.de_type}
    labels = tuple(t for t in TASKS if t in tasks)  # one label per trained task, in TASKS order
    recipe = ClassifierRecipe(labels=labels, steps=args.classifier_steps, seed=args.seed)
    root, task_dirs = data_paths(args)
    clean, degraded = find_sources(root, args.de_type, recipe.size, args.seed, recipe.max_clean, recipe.max_degraded,
                                   args.list_dir, task_dirs, args.max_pixels)
    print(f"degradation classifier ({', '.join(recipe.labels)}): {recipe.steps} steps on {len(clean)} clean and "
          f"{len(degraded)} degraded training images")
    net, info = train_classifier(clean, degraded, recipe, device, log=write)
    ckpt = load_checkpoint(path)
    ckpt[CLASSIFIER_KEY] = classifier_record(net, recipe, info)
    save_checkpoint(path, ckpt)
    print(f"degradation classifier stored in {path} ({info['wall_s']:.0f} s, {info['params'] / 1e3:.0f}k parameters)")


def check_classifier_tasks(path: Path, ckpt: dict[str, Any], de_type: Sequence[str]) -> None:
    """A one-line UserError when --de_type names a task the checkpoint's network was not trained for:
    the blind route would then read images as needing a pass the network cannot give."""
    from utils.text.encoder_link import checkpoint_tasks

    known = checkpoint_tasks(ckpt)
    missing = [t for t in TASKS if t in {task_of(d) for d in de_type} and t not in known]
    if missing:
        raise UserError(f"{path}: its network was trained for {', '.join(known)}, not {', '.join(missing)}; "
                        f"give --de_type the checkpoint's tasks (or a subset) for its degradation classifier")


def classifier_stage(args: Namespace) -> int:
    """``--stage classifier``: add a classifier to the checkpoint --resume names; its network,
    optimizer and position stay as they are."""
    from utils.runtime.device import pick_device
    from utils.train.run_lock import RunLock

    if args.resume is None:
        raise UserError("--stage classifier adds a degradation classifier to a checkpoint: name it with --resume CKPT")
    path = Path(args.ckpt_dir) / args.name / "last.pt" if args.resume == "auto" else Path(args.resume)
    if args.classifier_steps == 0:
        raise UserError("--stage classifier with --classifier_steps 0 would train nothing; give it a number of steps")
    writable_folders([(path.parent, "--resume", "the checkpoint")])
    with RunLock(path.parent, hint="wait for the run that uses it to end"):
        ckpt = load_checkpoint(path)  # a file that is not a checkpoint is refused before any training
        if CLASSIFIER_KEY in ckpt and not args.overwrite:
            raise UserError(f"{path}: already has a degradation classifier; replace it with --overwrite")
        check_classifier_tasks(path, ckpt, args.de_type)
        add_classifier(args, path, pick_device(args.device))
    return 0


def how_far(run: Run) -> str:
    """How far a time-budget run got: steps against the plan, epochs, images seen, the training time
    against the budget, and the time spent apart from it."""
    budget, pos = run.budget, run.pos
    images = pos.step * run.args.batch_size * run.info.world_size
    planned = (f"of the {budget.total_steps} planned" if budget.planned
               else "(the budget ran out before the step rate was measured)")
    apart = ", ".join(f"{kind} {s:.1f} s" for kind, s in run.clock.apart_s.items() if s >= 0.05) or "none"
    return (f"time budget {budget.minutes:g} min: step {pos.step} {planned}, epoch {pos.epoch + 1} "
            f"({pos.done_in_epoch}/{run.steps_per_epoch} batches into it), {images} images seen; "
            f"{trained_s(run):.1f} s in training steps of the {budget.budget_s:.1f} s budget; "
            f"timed apart this session: {apart}")


def throughput(run: Run) -> str:
    """Images/s and data-wait share after the first log window (compile and start-up excluded)."""
    seconds = run.speed.steady_seconds
    if not seconds:
        return ""
    return (f"; {run.speed.steady_images / seconds:.1f} images/s after the first {run.args.log_every} steps, "
            f"waiting for data {run.speed.steady_wait_s / seconds:.0%} of the time")


def train_main(argv: Sequence[str] | None) -> int:
    args = train_options(argv)
    check_train_paths(args)
    if args.stage == "classifier" and not args.check_data:
        with StopSignals(SIGUSR1_NOTE):
            return classifier_stage(args)
    if args.check_data:
        from utils.data.check import check_training_data, print_report

        root, task_dirs = data_paths(args)
        return print_report(check_training_data(root, args.de_type, task_dirs))
    retain_freed_memory()  # no page faults on big CPU tensors (utils/runtime/allocator.py)
    info = dist.setup(args.device)
    try:
        with contextlib.ExitStack() as held:
            signals = held.enter_context(StopSignals(SIGUSR1_NOTE))
            plan, cache = plan_run_speed(args, info) if args.stage != "text" else (None, None)
            if info.is_main:
                claim_folders(args, held)
            if args.stage in ("text", "all"):
                if info.is_main:
                    run_text_stage(args)
                dist.barrier()  # the other ranks read the encoder only once it is written
                if args.stage == "text":
                    return 0
            return train_restoration(args, info, plan, cache, signals)
    finally:
        dist.cleanup()


def main(argv: Sequence[str] | None = None) -> int:
    return cli_main(train_main, argv)


if __name__ == "__main__":
    sys.exit(main())
