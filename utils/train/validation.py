"""Validation during training: the test-layout sets of --val_root for the trained tasks, scored
every --val_every epochs with the blocks run eagerly, into the log and TensorBoard."""
from __future__ import annotations

from argparse import Namespace
from pathlib import Path

import numpy as np
import torch

from net.model import TextPromptIR
from utils.data.layouts import EXPECTED_TEST_LAYOUT
from utils.errors import UserError
from utils.eval.benchmarks import BenchmarkSet, find_test_sets
from utils.eval.evaluate import evaluate_set
from utils.progress import write
from utils.runtime.compile import eager_blocks
from utils.tasks import TASKS, task_of
from utils.train.tensorboard_log import TensorBoardLog


def validation_sets(args: Namespace) -> list[BenchmarkSet]:
    """The test-layout sets of --val_root for the tasks this run trains; with ``--clean_images`` it may
    also be one folder of clean images (e.g. Kodak24), validated as a denoising set."""
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


@torch.no_grad()
def validate(model: TextPromptIR, sets: list[BenchmarkSet], val_embeddings: dict[str, torch.Tensor] | None,
             device: torch.device, precision: str, max_images: int | None, log: TensorBoardLog | None,
             epoch: int) -> None:
    """Score ``sets`` with the blocks run eagerly (compiled blocks would compile anew for every image
    size), each with its task's validation embedding; the model goes back to training mode."""
    with eager_blocks():
        for test_set in sets:
            embedding = None if val_embeddings is None else val_embeddings[test_set.task]
            score, preview = evaluate_set(model, test_set, embedding, device, precision=precision,
                                          max_images=max_images, progress=False)
            summary = score.summary()
            write(f"  val {summary['label']}: PSNR {summary['psnr']:.2f} dB (input {summary['input_psnr']:.2f})")
            if log is not None:
                tag = summary["label"].replace(" ", "_")
                log.scalar(f"val_psnr/{tag}", summary["psnr"], epoch)
                log.image(f"val/{tag}", np.concatenate(preview, axis=1), epoch)
    model.train()
