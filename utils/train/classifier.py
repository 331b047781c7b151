"""Training of the degradation classifier (``net/degradation_classifier.py``), the image side of the
blind route, on the restoration net's own training images with degradations drawn on the fly
(``utils/data/classifier_samples.py``).

Every batch holds ``crops`` clean crops, each in every label set (all 8 for noise / rain / haze, 26 for
the five tasks: ``classifier_samples.all_label_sets``), plus ``degraded_crops`` crops of the real
degraded inputs, so that the classes differ only by the degradation. The loss is the multi-label BCE plus, for the dense head, the BCE of the cells that hold
rain (the rain layer adds more than ``rain_threshold`` somewhere in the cell). Clean and
single-degradation samples weigh about as much as the others together (``single_weight``): 4 of the three
tasks' 8 sets, but only 6 of the five tasks' 26. AdamW with a linear
warm-up and a cosine decay (``utils.train.schedulers.warmup_cosine``). Deterministic given the seed
(on one device and thread count), and the caller's RNG state is left untouched. A share of the images
is held apart to choose each label's threshold (``utils/train/classifier_thresholds.py``).
"""
from __future__ import annotations

import dataclasses
import time
from argparse import Namespace
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from net.degradation_classifier import (
    DEFAULT_LABELS,
    DENSE_STRIDE,
    THRESHOLD,
    TRAINING_CROP,
    DegradationClassifier,
    set_thresholds,
)
from utils.checkpoint import CLASSIFIER_KEY, load_checkpoint, save_checkpoint
from utils.cli import writable_folders
from utils.data.classifier_samples import (
    MAP_LABELS,
    Augment,
    DegradationRanges,
    Source,
    all_label_sets,
    find_sources,
    training_batch,
)
from utils.errors import UserError
from utils.progress import write
from utils.runtime.device import pick_device
from utils.tasks import TASKS, task_of
from utils.text.encoder_link import checkpoint_tasks
from utils.train.classifier_thresholds import choose_thresholds, exact_share, held_images, hold_apart
from utils.train.inputs import data_paths
from utils.train.run_lock import RunLock
from utils.train.schedulers import warmup_cosine

CLEAN_SAMPLES = 64  # clean samples per batch when the recipe leaves the number of crops open


@dataclasses.dataclass
class ClassifierRecipe:
    """Everything that decides the trained classifier; stored with it in the checkpoint."""

    labels: tuple[str, ...] = DEFAULT_LABELS
    steps: int = 3000
    # clean crops per batch, each in every label set; None: as many as fill about CLEAN_SAMPLES samples
    # (8 crops for noise / rain / haze, 2 for the five tasks), so a step costs the same for any labels ...
    crops: int | None = None
    degraded_crops: int = 2  # ... plus crops of real degraded inputs in the sets they can show
    size: int = TRAINING_CROP  # training crop side (native resolution); the classifier reads images in it
    lr: float = 1e-2
    weight_decay: float = 1e-4
    warmup: float = 0.1  # fraction of the steps
    dense_weight: float = 1.0  # 0: no dense rain head
    rain_threshold: float = 0.03  # a cell holds rain where the rain layer adds more than this (0-1)
    width: int = 16  # 0: no CNN, the crop statistics alone
    stages: int = 4
    stats: bool = True
    highpass: bool = True
    rotate: bool = True  # turn the clean content by k x 90 degrees before degrading it
    max_clean: int = 600  # clean training images kept in memory at most
    max_degraded: int = 200  # real degraded inputs kept in memory at most
    held_apart: float = 0.15  # share of the images kept out of training to choose each label's threshold
    seed: int = 0

    def clean_crops(self) -> int:
        """The clean crops per batch (``crops``, or as many as fill about CLEAN_SAMPLES samples)."""
        return self.crops or max(1, round(CLEAN_SAMPLES / len(all_label_sets(self.labels))))


def make_classifier(recipe: ClassifierRecipe) -> DegradationClassifier:
    """The (untrained) classifier a recipe trains."""
    dense = tuple(t for t in recipe.labels if t in MAP_LABELS) if recipe.dense_weight > 0 and recipe.width else ()
    return DegradationClassifier(recipe.labels, width=recipe.width, stages=recipe.stages, highpass=recipe.highpass,
                                 stats=recipe.stats, dense_labels=dense, crop=recipe.size)


def train_classifier(
    clean: Sequence[Source],
    degraded: Sequence[Source],
    recipe: ClassifierRecipe,
    device: torch.device | str = "cpu",
    log: Callable[[str], None] = print,
    ranges: DegradationRanges | None = None,
) -> tuple[DegradationClassifier, dict[str, Any]]:
    """Train a classifier by ``recipe`` on crops of the ``clean`` and real ``degraded`` images;
    returns it (eval mode, on the CPU) and what training measured (``wall_s``, ``cpu_s`` of this
    process, ``generate_s`` of the wall time making samples, ``samples``, ``params``,
    ``final_loss``, ``single_weight``, the image counts). On a CPU it runs on one thread (restored after)."""
    threads = torch.get_num_threads()
    if torch.device(device).type == "cpu":
        torch.set_num_threads(1)  # a net this small gains nothing from more; on a busy CPU they spin-wait
    try:
        return _train(clean, degraded, recipe, device, log, ranges or DegradationRanges())
    finally:
        torch.set_num_threads(threads)


def _train(clean: Sequence[Source], degraded: Sequence[Source], recipe: ClassifierRecipe, device: torch.device | str,
           log: Callable[[str], None], ranges: DegradationRanges) -> tuple[DegradationClassifier, dict[str, Any]]:
    aug = Augment(rotate=recipe.rotate)
    rng = np.random.default_rng(recipe.seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(recipe.seed)
        net = make_classifier(recipe)
    net = net.to(device).train()
    opt = torch.optim.AdamW(net.parameters(), recipe.lr, weight_decay=recipe.weight_decay)
    sched = warmup_cosine(opt, round(recipe.warmup * recipe.steps), recipe.steps, start_factor=0.02,
                          eta_min=0.02 * recipe.lr)
    few_weight = single_weight(recipe.labels)
    wall0, cpu0, gen, samples, loss = time.perf_counter(), time.process_time(), 0.0, 0, torch.zeros(())
    for step in range(recipe.steps):
        g0 = time.perf_counter()
        x, y, maps = training_batch(clean, degraded, recipe.labels, rng, recipe.clean_crops(), recipe.degraded_crops,
                                    recipe.size, ranges, aug, maps=net.dense_labels)
        gen += time.perf_counter() - g0
        samples += len(x)
        x = torch.from_numpy(x).to(device).permute(0, 3, 1, 2).float().div_(255.0)  # N x 3 x S x S
        logits, dense = net.forward_dense(x)
        target = torch.from_numpy(y).to(device)  # N x L
        if few_weight == 1.0:
            loss = F.binary_cross_entropy_with_logits(logits, target)
        else:
            few = target.sum(1, keepdim=True) <= 1  # N x 1: clean, or one degradation
            loss = F.binary_cross_entropy_with_logits(logits, target, weight=torch.where(few, few_weight, 1.0))
        if dense is not None:
            cells = (F.max_pool2d(torch.from_numpy(maps).to(device), DENSE_STRIDE) > recipe.rain_threshold).float()
            loss = loss + recipe.dense_weight * F.binary_cross_entropy_with_logits(dense, cells)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if (step + 1) % 100 == 0 or step + 1 == recipe.steps:
            log(f"classifier step {step + 1}/{recipe.steps}: loss {loss.item():.4f}")
    net = net.cpu().eval()
    measured = {"wall_s": time.perf_counter() - wall0, "cpu_s": time.process_time() - cpu0, "generate_s": gen,
            "samples": samples, "single_weight": few_weight,
            "params": sum(p.numel() for p in net.parameters()), "final_loss": float(loss.item()),
            "clean_images": len(clean), "degraded_images": len(degraded)}
    return net, measured


def single_weight(labels: Sequence[str]) -> float:
    """The loss weight of a sample that is clean or shows one degradation, against 1 for one showing
    several: as much as makes them half the loss, as the three labels' 8 sets do unweighted (4 of
    them). The 26 sets of the five tasks hold 6 such, so each weighs 20 / 6; a photo a user brings
    (and every benchmark set) shows one degradation or none."""
    sets = all_label_sets(labels)
    few = sum(len(s) <= 1 for s in sets)
    return max(1.0, (len(sets) - few) / few)


def classifier_record(net: DegradationClassifier, recipe: ClassifierRecipe, measured: dict[str, Any]) -> dict[str, Any]:
    """What a restoration checkpoint stores under "classifier" (read back by
    ``utils.checkpoint.load_classifier``)."""
    recipe_dict = {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(recipe).items()}
    recipe_dict["crops"] = recipe.clean_crops()  # what was trained, also where the recipe left it open
    return {"labels": list(net.labels), "config": dict(net.config), "state": net.state_dict(),
            "recipe": recipe_dict, "info": dict(measured)}


# --- adding the classifier to a restoration checkpoint ----------------------------------------------


def add_classifier(args: Namespace, path: Path, device: torch.device) -> None:
    """Train the degradation classifier on the run's training data and store it in the checkpoint
    ``path``, rewritten atomically with everything else unchanged."""
    tasks = {task_of(d) for d in args.de_type}
    labels = tuple(t for t in TASKS if t in tasks)  # one label per trained task, in TASKS order
    recipe = ClassifierRecipe(labels=labels, steps=args.classifier_steps, seed=args.seed)
    root, task_dirs = data_paths(args)
    clean, degraded = find_sources(root, args.de_type, recipe.size, args.seed, recipe.max_clean, recipe.max_degraded,
                                   args.list_dir, task_dirs, args.max_pixels)
    clean, held_clean = hold_apart(clean, recipe.held_apart, recipe.seed)
    degraded, held_degraded = hold_apart(degraded, recipe.held_apart, recipe.seed + 1)
    print(f"degradation classifier ({', '.join(recipe.labels)}): {recipe.steps} steps on {len(clean)} clean and "
          f"{len(degraded)} degraded training images")
    net, measured = train_classifier(clean, degraded, recipe, device, log=write)
    measured.update(choose_and_set_thresholds(net, held_clean, held_degraded, recipe.seed))
    ckpt = load_checkpoint(path)
    ckpt[CLASSIFIER_KEY] = classifier_record(net, recipe, measured)
    save_checkpoint(path, ckpt)
    print(f"degradation classifier stored in {path} ({measured['wall_s']:.0f} s, {measured['params'] / 1e3:.0f}k parameters)")


def choose_and_set_thresholds(net: DegradationClassifier, clean: Sequence[Source], degraded: Sequence[Source],
                               seed: int) -> dict[str, Any]:
    """Choose each label's threshold on the held-apart images (``utils.train.classifier_thresholds``),
    fold them into ``net``, print them; returns what to record with the classifier."""
    images = held_images(net, clean, degraded, seed)
    thresholds = choose_thresholds(images, net.labels)
    before = exact_share(images, net.labels, {t: THRESHOLD for t in net.labels})
    after = exact_share(images, net.labels, thresholds)
    set_thresholds(net, thresholds)
    if images:
        print(f"thresholds chosen on {len(images)} whole images held apart ({len(clean)} clean photos, also with "
              f"each degradation, {len(degraded)} real degraded inputs): "
              + ", ".join(f"{t} {v:.2f}" for t, v in thresholds.items())
              + f"; read exactly {100 * before:.1f} % at {THRESHOLD} -> {100 * after:.1f} %")
    return {"thresholds": thresholds, "threshold_images": len(images), "held_clean_images": len(clean),
            "held_degraded_images": len(degraded), "held_exact_at_threshold": before, "held_exact": after}


def check_classifier_tasks(path: Path, ckpt: dict[str, Any], de_type: Sequence[str]) -> None:
    """A one-line UserError when --de_type names a task the checkpoint's network was not trained for:
    the blind route would then read images as needing a pass the network cannot give."""
    known = checkpoint_tasks(ckpt)
    missing = [t for t in TASKS if t in {task_of(d) for d in de_type} and t not in known]
    if missing:
        raise UserError(f"{path}: its network was trained for {', '.join(known)}, not {', '.join(missing)}; "
                        f"give --de_type the checkpoint's tasks (or a subset) for its degradation classifier")


def classifier_stage(args: Namespace) -> int:
    """``train.py --stage classifier``: add a classifier to the checkpoint --resume names; its network,
    optimizer and position stay as they are."""
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
