"""A run's state in its checkpoints: where it stands (``Position``), the RNG states, the dict a save
writes, and reading it back: ``--resume`` continues exactly where the run stopped, ``--init`` starts
a new run from a checkpoint's weights."""
from __future__ import annotations

import random
import sys
from argparse import Namespace
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from net.model import TextPromptIR
from utils.checkpoint import check_same_config, load_checkpoint
from utils.digest import weights_sha256
from utils.errors import UserError
from utils.train import dist
from utils.train.budget import Budget, make_scheduler, resumed_budget
from utils.train.step import match_lr_type


@dataclass
class Position:
    """Where a run stands; checkpoints store it and --resume restores it."""

    epoch: int = 0
    step: int = 0
    done_in_epoch: int = 0  # batches of the current epoch already trained on
    last_saved: tuple[Path, int] | None = None  # (path, step) of the newest good checkpoint


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


def checkpoint_state(model: TextPromptIR, optimizer: torch.optim.Optimizer, scheduler: Any, pos: Position,
                     args: Namespace, text_record: dict[str, Any] | None, speed: dict[str, Any],
                     scaler: Any, budget: dict[str, Any] | None) -> dict[str, Any]:
    """What a checkpoint holds to resume the run exactly (the RNG states are read now)."""
    options = {k: (v if isinstance(v, (int, float, str, bool, type(None))) else str(v)) for k, v in vars(args).items()}
    return dict(
        model=model.state_dict(), config=model.config.to_dict(), optimizer=optimizer.state_dict(),
        scheduler=scheduler.state_dict(), epoch=pos.epoch, step=pos.step,
        batches_done_in_epoch=pos.done_in_epoch, rng=rng_state(), text_encoder=text_record, options=options,
        speed=speed, **({} if scaler is None else {"scaler": scaler.state_dict()}),
        **({} if budget is None else {"budget": budget}))


def resume(path: Path, model: TextPromptIR, optimizer: torch.optim.Optimizer, steps_per_epoch: int, args: Namespace,
           dist_info: dist.DistInfo, graphed: bool) -> tuple[Position, dict | None, Any, Budget | None]:
    """Continue ``path`` exactly where it stopped: weights, optimizer, schedule, position, RNG;
    returns the position, the fp16 gradient scaler's state (None if it had none), the schedule
    and the time budget (None if the run has none)."""
    if not path.is_file():
        raise UserError(f"{path}: no checkpoint to resume; start the run without --resume, or give "
                        "--resume the path of a checkpoint")
    ckpt = load_checkpoint(path)
    check_same_config(path, ckpt, model.config)
    model.load_state_dict(ckpt["model"])
    budget = resumed_budget(path, ckpt.get("budget"), ckpt["step"], args.time_budget, dist_info.is_main)
    # the schedule before the optimizer's state: it sets the lr
    scheduler = make_scheduler(optimizer, budget, args.warmup_epochs * steps_per_epoch, args.epochs * steps_per_epoch)
    optimizer.load_state_dict(ckpt["optimizer"])
    match_lr_type(optimizer, dist_info.device, graphed)
    scheduler.load_state_dict(ckpt["scheduler"])
    set_rng_state(ckpt["rng"])
    pos = Position(ckpt["epoch"], ckpt["step"], ckpt["batches_done_in_epoch"], (path, ckpt["step"]))
    before = (ckpt.get("options") or {}).get("batch_size")
    if dist_info.is_main:
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
