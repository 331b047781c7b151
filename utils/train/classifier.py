"""Training of the degradation classifier (``net/degradation_classifier.py``), the image side of the
blind route, on the restoration net's own training images with degradations drawn on the fly
(``utils/data/classifier_samples.py``).

Every batch holds ``crops`` clean crops, each in every label set (all 8 for noise / rain / haze, 26 for
the five tasks: ``classifier_samples.all_label_sets``), plus ``degraded_crops`` crops of the real
degraded inputs, so that the classes differ only by the degradation. The loss is the multi-label BCE plus, for the dense head, the BCE of the cells that hold
rain (the rain layer adds more than ``rain_threshold`` somewhere in the cell). AdamW with a linear
warm-up and a cosine decay (``utils.train.schedulers.warmup_cosine``). Deterministic given the seed
(on one device and thread count), and the caller's RNG state is left untouched.
"""
from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from net.degradation_classifier import DEFAULT_LABELS, DENSE_STRIDE, DegradationClassifier
from utils.data.classifier_samples import (
    MAP_LABELS,
    Augment,
    DegradationRanges,
    Source,
    all_label_sets,
    training_batch,
)
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
    size: int = 64  # training crop side (native resolution)
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
    seed: int = 0

    def clean_crops(self) -> int:
        """The clean crops per batch (``crops``, or as many as fill about CLEAN_SAMPLES samples)."""
        return self.crops or max(1, round(CLEAN_SAMPLES / len(all_label_sets(self.labels))))


def make_classifier(recipe: ClassifierRecipe) -> DegradationClassifier:
    """The (untrained) classifier a recipe trains."""
    dense = tuple(t for t in recipe.labels if t in MAP_LABELS) if recipe.dense_weight > 0 and recipe.width else ()
    return DegradationClassifier(recipe.labels, width=recipe.width, stages=recipe.stages, highpass=recipe.highpass,
                                 stats=recipe.stats, dense_labels=dense)


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
    ``final_loss``, the image counts). On a CPU it runs on one thread (restored after)."""
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
    wall0, cpu0, gen, samples, loss = time.perf_counter(), time.process_time(), 0.0, 0, torch.zeros(())
    for step in range(recipe.steps):
        g0 = time.perf_counter()
        x, y, maps = training_batch(clean, degraded, recipe.labels, rng, recipe.clean_crops(), recipe.degraded_crops,
                                    recipe.size, ranges, aug, maps=net.dense_labels)
        gen += time.perf_counter() - g0
        samples += len(x)
        x = torch.from_numpy(x).to(device).permute(0, 3, 1, 2).float().div_(255.0)  # N x 3 x S x S
        logits, dense = net.forward_dense(x)
        loss = F.binary_cross_entropy_with_logits(logits, torch.from_numpy(y).to(device))
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
    info = {"wall_s": time.perf_counter() - wall0, "cpu_s": time.process_time() - cpu0, "generate_s": gen,
            "samples": samples,
            "params": sum(p.numel() for p in net.parameters()), "final_loss": float(loss.item()),
            "clean_images": len(clean), "degraded_images": len(degraded)}
    return net, info


def classifier_record(net: DegradationClassifier, recipe: ClassifierRecipe, info: dict[str, Any]) -> dict[str, Any]:
    """What a restoration checkpoint stores under "classifier" (read back by
    ``utils.checkpoint.load_classifier``)."""
    recipe_dict = {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(recipe).items()}
    recipe_dict["crops"] = recipe.clean_crops()  # what was trained, also where the recipe left it open
    return {"labels": list(net.labels), "config": dict(net.config), "state": net.state_dict(),
            "recipe": recipe_dict, "info": dict(info)}
