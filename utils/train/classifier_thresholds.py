"""Each label's threshold of the degradation classifier, chosen at training time on whole images held
apart from its training (``net/degradation_classifier.py``).

A classifier trained on crops reads a whole photo with a bias of its own per label: noise lifts the
rain output of a crop, so a noisy photo can read as noisy and rainy at the common 0.5. A share of the
run's clean training images (and of its real degraded inputs) is kept out of the classifier's
training. Each held clean image is read whole, as the blind route reads a photo, clean and with each
degradation drawn on it alone (noise once at each of the protocol's levels); each held real input is
read as it is. Every label's threshold is then the one of LABEL_THRESHOLD_CHOICES under which the most images
are read exactly (their set of degradations, no more, no less) as the blind route reads them
(``net.degradation_classifier.shown``), one label at a time, in rounds; a tie keeps the one nearest
0.5. ``net.degradation_classifier.set_thresholds`` folds them into the classifier, so that every
reader keeps THRESHOLD and the unsure band around it.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import torch

from net.degradation_classifier import MIN_SIDE, THRESHOLD, DegradationClassifier, read_logits, shown, threshold_shift
from utils.data.classifier_samples import TEST_RANGES, Source, degrade, set_name

LABEL_THRESHOLD_CHOICES = tuple(round(0.3 + 0.05 * i, 2) for i in range(11))  # 0.30 ... 0.80
ROUNDS = 3  # passes over the labels; each can only raise the count read exactly


@dataclasses.dataclass
class HeldImage:
    """One image of the threshold set: what the classifier reads in it, per label, and its truth."""

    logits: dict[str, torch.Tensor]
    truth: frozenset[str]
    name: str


def hold_apart(sources: Sequence[Source], share: float, seed: int) -> tuple[list[Source], list[Source]]:
    """(kept for training, held apart): ``share`` of ``sources`` drawn by ``seed``, at least one
    image held and one kept where there are two or more; none held for ``share`` 0 or one image."""
    n = len(sources)
    held_n = min(n - 1, max(1, round(share * n))) if share > 0 and n > 1 else 0
    held = set(np.random.default_rng(seed).permutation(n)[:held_n].tolist())
    return [s for i, s in enumerate(sources) if i not in held], [s for i, s in enumerate(sources) if i in held]


def held_images(net: DegradationClassifier, clean: Sequence[Source], degraded: Sequence[Source],
                seed: int) -> list[HeldImage]:
    """The threshold set, read: each clean image as it is and with each of the classifier's
    degradations drawn on it whole (noise once per level of ``TEST_RANGES``), and each real degraded
    input as it is; images with a side under MIN_SIDE are left out. Compounds are not in it: what
    the blind route is measured on is a photo with one degradation or none (docs/benchmarks/routes.md)."""
    variants = [((), None)] + [((t,), sigma) for t in net.labels
                               for sigma in (TEST_RANGES.sigmas if t == "denoise" and TEST_RANGES.sigmas else (None,))]
    out = []
    for i, src in enumerate(clean):
        if min(src.image.shape[:2]) < MIN_SIDE:
            continue
        for k, (add, sigma) in enumerate(variants):
            rng = np.random.default_rng([seed, i, k])
            ranges = dataclasses.replace(TEST_RANGES, sigmas=(sigma,)) if sigma else TEST_RANGES
            image = degrade(src.image, src.depth, add, rng, ranges)[0] if add else src.image
            out.append(HeldImage(read_logits(net, image), frozenset(add), f"{src.name} {set_name(add)}"))
    for src in degraded:
        if min(src.image.shape[:2]) >= MIN_SIDE:
            out.append(HeldImage(read_logits(net, src.image), frozenset(src.present) & set(net.labels), src.name))
    return out


def readings(images: Sequence[HeldImage], labels: Sequence[str], thresholds: dict[str, float]) -> list[frozenset[str]]:
    """What each image reads as under ``thresholds``, as the blind route reads it: ``shown`` of each
    label's mean sigmoid, moved as ``set_thresholds`` moves it."""
    shift = {t: threshold_shift(thresholds[t]) for t in labels}
    return [frozenset(shown({t: float(torch.sigmoid(im.logits[t] - shift[t]).mean()) for t in labels}))
            for im in images]


def exact_share(images: Sequence[HeldImage], labels: Sequence[str], thresholds: dict[str, float]) -> float:
    """The share of ``images`` read exactly under ``thresholds``."""
    reads = readings(images, labels, thresholds)
    return float(np.mean([r == im.truth for r, im in zip(reads, images)])) if images else float("nan")


def choose_thresholds(images: Sequence[HeldImage], labels: Sequence[str]) -> dict[str, float]:
    """Each label's threshold among LABEL_THRESHOLD_CHOICES (see the module docstring); THRESHOLD for
    every label when there are no images."""
    chosen = {t: THRESHOLD for t in labels}
    if not images:
        return chosen
    for _ in range(ROUNDS):
        before = dict(chosen)
        for label in labels:
            def score(value: float, label: str = label) -> tuple[float, float]:
                return exact_share(images, labels, {**chosen, label: value}), -abs(value - THRESHOLD)
            chosen[label] = max(LABEL_THRESHOLD_CHOICES, key=score)
        if chosen == before:
            break
    return chosen
