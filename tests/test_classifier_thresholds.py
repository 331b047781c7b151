"""Each label's threshold of the degradation classifier, chosen on whole images held apart from its
training, and folded into its output bias."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import smooth_image

from net.degradation_classifier import (
    CLEAR,
    THRESHOLD,
    DegradationClassifier,
    read_logits,
    set_thresholds,
    threshold_shift,
)
from utils.data.classifier_samples import clean_source
from utils.train.classifier_thresholds import (
    LABEL_THRESHOLD_CHOICES,
    HeldImage,
    choose_thresholds,
    exact_share,
    held_images,
    hold_apart,
)

LABELS = ("denoise", "derain", "dehaze")


def logit(p: float) -> float:
    return float(np.log(p / (1 - p)))


def held(truth: tuple[str, ...], **probs: float) -> HeldImage:
    """An image whose every crop (or whole view) reads ``probs`` (0.1 for a label not given)."""
    return HeldImage({t: torch.full((4,), logit(probs.get(t, 0.1))) for t in LABELS}, frozenset(truth), "x")


def test_a_set_threshold_moves_each_crops_decision_point_and_nothing_else():
    torch.manual_seed(0)
    net = DegradationClassifier(LABELS, width=4, stages=2, crop=32).eval()
    image = smooth_image(np.random.default_rng(0), 80, 96)
    before = read_logits(net, image)
    set_thresholds(net, {"derain": 0.7})
    after = read_logits(net, image)
    for t in LABELS:
        moved = logit(0.7) if t == "derain" else 0.0
        assert torch.allclose(after[t], before[t] - moved, atol=1e-5)
    # above THRESHOLD now exactly where the crop was above 0.7 before
    assert torch.equal(torch.sigmoid(after["derain"]) > THRESHOLD, torch.sigmoid(before["derain"]) > 0.7)
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        set_thresholds(net, {"derain": 1.0})
    assert threshold_shift(0.5) == 0.0 and threshold_shift(0.7) == pytest.approx(logit(0.7))


def test_the_held_apart_share_is_disjoint_from_training_drawn_by_the_seed_and_never_all_of_it():
    items = list(range(20))
    kept, apart = hold_apart(items, 0.15, seed=3)
    assert len(apart) == 3 and sorted(kept + apart) == items
    assert hold_apart(items, 0.15, seed=3) == (kept, apart) and hold_apart(items, 0.15, seed=4) != (kept, apart)
    assert hold_apart(items, 0.0, 0) == (items, [])
    assert hold_apart([7], 0.5, 0) == ([7], [])  # one image: kept for training
    assert len(hold_apart([1, 2], 0.9, 0)[0]) == 1  # at least one kept


def test_a_label_that_crops_overread_gets_the_threshold_that_reads_the_most_images_exactly():
    # noise lifts rain to 0.62 on noisy photos whose noise is not read clearly (0.6); real rain reads
    # 0.8: only a rain threshold in [0.62, 0.8) reads all of them exactly, and the nearest 0.5 is 0.65
    images = [held(("denoise",), denoise=0.6, derain=0.62) for _ in range(3)] + \
             [held(("derain",), derain=0.8) for _ in range(2)] + [held(())]
    assert exact_share(images, LABELS, {t: THRESHOLD for t in LABELS}) == pytest.approx(3 / 6)
    chosen = choose_thresholds(images, LABELS)
    assert chosen == {"denoise": 0.5, "derain": 0.65, "dehaze": 0.5}
    assert exact_share(images, LABELS, chosen) == 1.0
    assert set(chosen.values()) <= set(LABEL_THRESHOLD_CHOICES)
    assert choose_thresholds([], LABELS) == {t: THRESHOLD for t in LABELS}


def test_thresholds_are_chosen_for_the_reading_the_blind_route_makes():
    # beside noise read clearly the route leaves an unsure rain reading alone, so the lifted rain of
    # noisy photos costs nothing and rain keeps 0.5, which reads the faint real rain (0.55) too
    images = [held(("denoise",), denoise=(CLEAR + 1) / 2, derain=0.62) for _ in range(3)] + \
             [held(("derain",), derain=0.55) for _ in range(2)] + [held(())]
    assert exact_share(images, LABELS, {t: THRESHOLD for t in LABELS}) == 1.0
    assert choose_thresholds(images, LABELS) == {t: THRESHOLD for t in LABELS}


def test_the_threshold_set_reads_each_held_photo_clean_with_each_degradation_and_each_real_input():
    torch.manual_seed(0)
    net = DegradationClassifier(LABELS, width=4, stages=2, crop=32).eval()
    rng = np.random.default_rng(1)
    clean = [clean_source(smooth_image(rng, 64, 72), f"c{i}") for i in range(2)]
    clean.append(clean_source(smooth_image(rng, 20, 72), "tiny"))  # too small to read: left out
    real = clean_source(smooth_image(rng, 64, 64), "rainy")
    real.present = ("derain",)
    images = held_images(net, clean, [real], seed=0)
    # per readable photo: clean, noise at 15 / 25 / 50, rain, haze; then the real input
    truths = [sorted(im.truth) for im in images]
    assert truths == 2 * [[], ["denoise"], ["denoise"], ["denoise"], ["derain"], ["dehaze"]] + [["derain"]]
    assert all(set(im.logits) == set(LABELS) for im in images)
    again = held_images(net, clean, [real], seed=0)  # the same images, drawn again by the seed
    assert all(torch.equal(a.logits[t], b.logits[t]) for a, b in zip(images, again) for t in LABELS)
