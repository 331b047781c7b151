"""Samples for the degradation classifier (``net/degradation_classifier.py``): crops of the
training set's images with any subset of the degradations applied on the fly.

A sample is a native-resolution crop of a clean training image with a subset of the degradations
(at most ``MAX_COMBINED``) applied in their physical order (``utils.tasks.PHYSICAL_ORDER``: the
scene's haze, rain in front of it, the camera's shake, a short exposure's darkness, the camera's
noise), labelled with that subset as a multi-hot vector; the empty subset is "clean". The
degradations are the project's own (``utils.data.degradations``): noise, rain and haze as the
restoration net's training set draws them (``utils.data.train_set``), blur and darkness as the demo
set makes them. The real degraded inputs of the training set (rainy, hazy, blurred and dark pairs)
are samples too, labelled by their task, with the later degradations added on top (a real hazy
image may also get rain and noise, a blurred one darkness).

A training batch holds every label variant of the SAME clean crop, so the classifier must learn the
degradation and cannot learn the content.
"""
from __future__ import annotations

import dataclasses
import hashlib
import itertools
from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np

from utils.data.degradations import (
    BLUR_EXTENT,
    HAZE_DEPTH_OFFSET,
    HAZE_DEPTH_SCALE,
    LOWLIGHT_EXPOSURE,
    OTS_A_RANGE,
    OTS_BETA_RANGE,
    add_gaussian_noise,
    depth_proxy,
    synth_haze,
    synth_low_light,
    synth_motion_blur,
    synth_rain,
)
from utils.data.image_io import DEFAULT_MAX_PIXELS, image_size, read_image
from utils.data.layouts import find_train_pairs
from utils.errors import UserError
from utils.tasks import PHYSICAL_ORDER, task_of

# A new task needs a place in utils.tasks.PHYSICAL_ORDER and a synthesiser in degrade().
# Label sets hold at most this many degradations: all 8 sets of noise / rain / haze, 26 of the 32 of the
# five tasks (a photo that is dark, blurred, rainy, hazy and noisy at once teaches nothing new).
MAX_COMBINED = 3
MAP_LABELS = ("derain",)  # degradations whose per-pixel map a sample can carry (the dense head's target)


@dataclasses.dataclass(frozen=True)
class DegradationRanges:
    """The parameter ranges drawn for each degradation."""

    sigma: tuple[float, float] = (12.0, 55.0)  # Gaussian noise std in grey levels (the paper's: 15, 25, 50)
    haze_a: tuple[float, float] = OTS_A_RANGE  # atmospheric light, RESIDE OTS
    haze_beta: tuple[float, float] = OTS_BETA_RANGE  # scattering coefficient, RESIDE OTS
    sigmas: tuple[float, ...] | None = None  # fixed noise levels to choose from instead of the range
    blur_extent: tuple[float, float] = BLUR_EXTENT  # camera-shake path length in pixels (GoPro-calibrated)
    exposure: tuple[float, float] = LOWLIGHT_EXPOSURE  # fraction of the normal exposure (LOL-calibrated)


TEST_RANGES = DegradationRanges(sigmas=(15.0, 25.0, 50.0))


@dataclasses.dataclass
class Source:
    """A training image: a clean one (``present`` empty; ``depth`` its depth proxy, larger = farther,
    for haze), or a real degraded input showing ``present`` with its clean target ``clean``."""

    image: np.ndarray  # H x W x 3 uint8 RGB
    depth: np.ndarray | None = None  # H x W float32 in [0, 1]
    present: tuple[str, ...] = ()
    clean: np.ndarray | None = None
    name: str = ""


def clean_source(image: np.ndarray, name: str = "") -> Source:
    """A clean Source with the depth proxy the project hazes photos with, computed on the whole image."""
    image = np.ascontiguousarray(image)
    return Source(image, depth_proxy(image), (), None, name)


def load_clean(paths: Sequence[Path]) -> list[Source]:
    """Decode clean images once, dropping exact duplicates (a rain set repeats its targets)."""
    seen: set[bytes] = set()
    sources = []
    for path in paths:
        img = read_image(path)
        key = hashlib.blake2b(img.tobytes() + str(img.shape).encode(), digest_size=16).digest()
        if key not in seen:
            seen.add(key)
            sources.append(clean_source(img, str(path)))
    return sources


def load_degraded(pairs: Sequence[tuple[Path, Path]], task: str) -> list[Source]:
    """Real degraded inputs of ``task`` with their clean targets."""
    out = []
    for lq, gt in pairs:
        img, clean = read_image(lq), read_image(gt)
        if img.shape != clean.shape:
            raise UserError(f"{lq} ({img.shape[1]}x{img.shape[0]}) and {gt} ({clean.shape[1]}x{clean.shape[0]}): "
                            "a pair must have the same size; replace or remove one of them")
        out.append(Source(img, None, (task,), clean, str(lq)))
    return out


def find_sources(
    root: Path | str,
    de_types: Sequence[str],
    min_side: int,
    seed: int = 0,
    max_clean: int = 600,
    max_degraded: int = 200,
    list_dir: Path | str | None = None,
    task_dirs: dict[str, Path | str] | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> tuple[list[Source], list[Source]]:
    """The classifier's training images, from the restoration net's training set (``find_train_pairs``):
    the clean images (denoise images, the targets of rain and haze pairs) and the real degraded
    inputs (rainy, hazy) of the tasks of ``de_types``. Images with a side under ``min_side`` are
    left out. At most ``max_clean`` clean images (shared equally by the tasks) and ``max_degraded``
    degraded ones are drawn, by ``seed``, so that a set of tens of thousands of images stays
    within memory. Returns (clean, degraded); UserError if no clean image is usable."""
    task_dirs = task_dirs or {}
    rng = np.random.default_rng(seed)
    tasks = list(dict.fromkeys(task_of(d) for d in de_types))
    first_type = {t: next(d for d in de_types if task_of(d) == t) for t in tasks}
    pairs = {t: find_train_pairs(root, first_type[t], list_dir, task_dirs.get(t)) for t in tasks}

    def usable(paths: Sequence[Path], limit: int) -> list[Path]:
        order = rng.permutation(len(paths))
        kept = []
        for i in order:
            if len(kept) >= limit:
                break
            if min(image_size(paths[i], max_pixels)) >= min_side:
                kept.append(paths[i])
        return sorted(kept)

    clean_paths: list[Path] = []
    for t in tasks:
        targets = list(dict.fromkeys(gt for _, gt in pairs[t]))
        clean_paths += usable(targets, max(1, max_clean // len(tasks)))
    degraded_tasks = [t for t in tasks if t != "denoise"]
    degraded: list[Source] = []
    for t in degraded_tasks:
        by_input = {lq: gt for lq, gt in pairs[t] if lq is not None}
        chosen = usable(list(by_input), max(1, max_degraded // len(degraded_tasks)))
        degraded += load_degraded([(lq, by_input[lq]) for lq in chosen], t)
    clean = load_clean(clean_paths)
    if not clean:
        raise UserError(f"{root}: no clean training image is at least {min_side}x{min_side} pixels, the crop the "
                        "degradation classifier trains on; add larger images or pass --classifier_steps 0")
    return clean, degraded


def all_label_sets(labels: Sequence[str], max_size: int = MAX_COMBINED) -> list[tuple[str, ...]]:
    """Every subset of ``labels`` with at most ``max_size`` of them, the empty set ("clean") first."""
    return [tuple(c) for r in range(min(len(labels), max(max_size, 0)) + 1) for c in itertools.combinations(labels, r)]


def set_name(label_set: Sequence[str]) -> str:
    """'derain+denoise' for a set (in physical order), 'clean' for the empty set."""
    return "+".join(t for t in PHYSICAL_ORDER if t in label_set) or "clean"


def addable(present: Sequence[str], labels: Sequence[str]) -> tuple[str, ...]:
    """The labels that may be added on top of an image already showing ``present``: those after its
    last degradation in the physical order (no haze behind real rain)."""
    last = max((PHYSICAL_ORDER.index(t) for t in present), default=-1)
    return tuple(t for t in labels if PHYSICAL_ORDER.index(t) > last)


def degrade(
    img: np.ndarray,
    depth: np.ndarray | None,
    add: Sequence[str],
    rng: np.random.Generator,
    ranges: DegradationRanges,
) -> tuple[np.ndarray, dict]:
    """Apply the degradations in ``add`` to a uint8 crop in physical order; returns (uint8, params).
    ``params`` holds what was drawn (``A``, ``beta``, ``sigma``, ``blur_extent``, ``exposure``), the mean airlight added
    (``veil``), the mean change in grey levels of rain (``rain_residual``) and the rain layer's
    contribution ``rain_map`` (H x W float32 in [0, 1], the dense head's target)."""
    unknown = set(add) - set(PHYSICAL_ORDER)
    if unknown:
        raise ValueError(f"no synthesiser for {sorted(unknown)}; known: {PHYSICAL_ORDER}")
    params: dict = {}
    for task in PHYSICAL_ORDER:
        if task not in add:
            continue
        if task == "dehaze":
            if depth is None:
                raise ValueError("haze needs the depth of the crop")
            img, drawn = synth_haze(img, depth, rng, A=ranges.haze_a, beta=ranges.haze_beta)
            t = np.exp(-drawn["beta"] * (HAZE_DEPTH_OFFSET + HAZE_DEPTH_SCALE * depth))  # as in synth_haze
            params.update(drawn, veil=float(drawn["A"] * (1.0 - t).mean()))
        elif task == "derain":
            before = img
            img = synth_rain(img, rng)
            params["rain_map"] = (img.astype(np.float32) - before).mean(axis=2) / 255.0  # >= 0: screen blend
            params["rain_residual"] = float(255.0 * params["rain_map"].mean())
        elif task == "deblur":
            extent = float(rng.uniform(*ranges.blur_extent))
            img = synth_motion_blur(img, rng, extent=extent)
            params["blur_extent"] = extent
        elif task == "lowlight":
            exposure = float(np.exp(rng.uniform(*np.log(ranges.exposure))))
            img = synth_low_light(img, rng, exposure=exposure)
            params["exposure"] = exposure
        elif task == "denoise":
            sigma = float(rng.choice(ranges.sigmas)) if ranges.sigmas else float(rng.uniform(*ranges.sigma))
            img = add_gaussian_noise(img, sigma, rng)
            params["sigma"] = sigma
    return img, params


@dataclasses.dataclass(frozen=True)
class Augment:
    """Content augmentation of a clean crop before it is degraded (never of the degradation)."""

    scale: tuple[float, float] = (0.5, 1.0)  # resize the whole image by this factor (more texture per crop)
    channel_shuffle: bool = True  # every degradation treats the channels alike
    gain: tuple[float, float] = (0.35, 1.1)  # multiply the crop: dark photos
    gamma: tuple[float, float] = (0.7, 1.4)
    p_photometric: float = 0.5  # chance of gain and gamma
    p_jpeg: float = 0.25  # chance of a JPEG round trip of the degraded crop
    jpeg_quality: tuple[int, int] = (60, 95)
    p_colour: float = 0.7  # chance of a white-balance and saturation change (tints grey photos too)
    channel_gain: tuple[float, float] = (0.7, 1.3)
    saturation: tuple[float, float] = (0.3, 1.6)
    rotate: bool = True  # turn the clean content by k x 90 degrees (the degradations keep their direction)
    p_grain: float = 0.5  # chance of faint sensor grain on the clean photo (labelled clean)
    grain_sigma: tuple[float, float] = (0.5, 3.0)


def _resized(arrays: list[np.ndarray | None], size: int, rng: np.random.Generator, aug: Augment) -> list:
    s = float(rng.uniform(*aug.scale))
    h, w = arrays[0].shape[:2]
    if s >= 1.0 or min(h, w) * s < size:
        return arrays
    new = (round(w * s), round(h * s))
    return [None if a is None else cv2.resize(a, new, interpolation=cv2.INTER_AREA) for a in arrays]


def _crop(arrays: list, size: int, rng: np.random.Generator) -> list:
    h, w = arrays[0].shape[:2]
    if min(h, w) < size:
        raise ValueError(f"{h}x{w} image is smaller than the {size}px crop")
    top, left = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
    return [None if a is None else a[top:top + size, left:left + size] for a in arrays]


def clean_crop(src: Source, size: int, rng: np.random.Generator,
               aug: Augment | None) -> tuple[np.ndarray, np.ndarray]:
    """A random size x size crop of a clean image and of its depth, with the content augmentation."""
    img, depth = src.image, src.depth
    if aug is not None:
        img, depth = _resized([img, depth], size, rng, aug)
    crop, dcrop = _crop([img, depth], size, rng)
    if aug is not None:
        if rng.random() < 0.5:  # horizontal flip only: rain falls down and haze grows upward
            crop, dcrop = crop[:, ::-1], dcrop[:, ::-1]
        if aug.rotate:
            crop = np.rot90(crop, int(rng.integers(4)))  # the depth crop stays: far is still up
        if aug.channel_shuffle:
            crop = crop[..., rng.permutation(3)]
        x = crop.astype(np.float32) / 255.0
        if rng.random() < aug.p_colour:
            x = x * rng.uniform(*aug.channel_gain, size=3).astype(np.float32)  # white balance
            grey = x.mean(axis=2, keepdims=True)
            x = grey + float(rng.uniform(*aug.saturation)) * (x - grey)
        if rng.random() < aug.p_photometric:
            x = float(rng.uniform(*aug.gain)) * np.clip(x, 0, 1) ** float(rng.uniform(*aug.gamma))
        if rng.random() < aug.p_grain:
            x = x + rng.standard_normal(x.shape, dtype=np.float32) * np.float32(rng.uniform(*aug.grain_sigma) / 255.0)
        crop = np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(crop), np.ascontiguousarray(dcrop)


def degraded_crop(src: Source, size: int, rng: np.random.Generator,
                  aug: Augment | None) -> tuple[np.ndarray, np.ndarray | None]:
    """A random crop of a real degraded input (resize, flip and channel order only: the degradation
    is left as it is) and, for real rain, its rain map (the input's brightening over the target)."""
    arrays = [src.image, src.clean]
    if aug is not None:
        arrays = _resized(arrays, size, rng, aug)
    crop, clean = _crop(arrays, size, rng)
    if aug is not None:
        if rng.random() < 0.5:
            crop, clean = crop[:, ::-1], clean[:, ::-1]
        if aug.channel_shuffle:
            order = rng.permutation(3)
            crop, clean = crop[..., order], clean[..., order]
    rain = None
    if "derain" in src.present:
        rain = np.clip((crop.astype(np.float32) - clean).mean(axis=2) / 255.0, 0.0, 1.0)
    return np.ascontiguousarray(crop), rain


def jpeg_round_trip(img: np.ndarray, quality: int) -> np.ndarray:
    """Encode and decode a uint8 RGB image as JPEG at ``quality``."""
    ok, buf = cv2.imencode(".jpg", img[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise RuntimeError("OpenCV could not encode a JPEG")
    return np.ascontiguousarray(cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1])


def training_batch(
    clean: Sequence[Source],
    degraded: Sequence[Source],
    labels: Sequence[str],
    rng: np.random.Generator,
    crops: int,
    degraded_crops: int,
    size: int,
    ranges: DegradationRanges,
    aug: Augment | None,
    maps: Sequence[str] = (),
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``crops`` clean crops, each in every label set, and ``degraded_crops`` crops of real degraded
    inputs (if any), each in every set it can show (see :func:`addable`). Returns uint8
    N x size x size x 3 images, float32 N x L multi-hot targets and float32 N x len(maps) x size x size
    maps of the labels in ``maps`` (zero where absent)."""
    if set(maps) - set(MAP_LABELS):
        raise ValueError(f"no map for {sorted(set(maps) - set(MAP_LABELS))}; maps exist for {MAP_LABELS}")
    zero = np.zeros((size, size), np.float32)
    xs, ys, ms = [], [], []

    def emit(img: np.ndarray, shown: Sequence[str], rain: np.ndarray | None) -> None:
        if aug is not None and rng.random() < aug.p_jpeg:
            img = jpeg_round_trip(img, int(rng.integers(aug.jpeg_quality[0], aug.jpeg_quality[1] + 1)))
        xs.append(img)
        ys.append([float(t in shown) for t in labels])
        ms.append(np.stack([rain if (m == "derain" and rain is not None) else zero for m in maps])
                  if maps else np.zeros((0, size, size), np.float32))

    for _ in range(crops):
        src = clean[int(rng.integers(len(clean)))]
        base, depth = clean_crop(src, size, rng, aug)
        for add in all_label_sets(labels):
            img, params = degrade(base, depth, add, rng, ranges)
            emit(img, add, params.get("rain_map"))
    for _ in range(degraded_crops if degraded else 0):
        src = degraded[int(rng.integers(len(degraded)))]
        base, rain = degraded_crop(src, size, rng, aug)
        for add in all_label_sets(addable(src.present, labels), MAX_COMBINED - len(src.present)):
            img, params = degrade(base, None, add, rng, ranges)
            added = params.get("rain_map")
            emit(img, tuple(src.present) + add, rain if added is None else added)
    return np.stack(xs), np.asarray(ys, np.float32), np.stack(ms)


def test_samples(
    sources: Sequence[Source],
    labels: Sequence[str],
    seed: int,
    per_set: int,
    size: int,
    ranges: DegradationRanges = TEST_RANGES,
    final_transform: Callable[[np.ndarray], np.ndarray] | None = None,
) -> list[dict]:
    """``per_set`` test crops of ``size`` for every label set (equal shares), spread over the clean
    ``sources`` in turn, each from its own generator (seed, set, k), at native resolution; haze
    uses the depth proxy of the whole photo. The noise level cycles through ``ranges.sigmas`` so
    that every pass over the sources and every source is balanced. Returns dicts with the uint8
    ``image``, the bool ``target``, the ``set`` name, the ``source`` name and ``params``."""
    out = []
    for si, present in enumerate(all_label_sets(labels)):
        for k in range(per_set):
            rng = np.random.default_rng([seed, si, k])
            src = sources[k % len(sources)]
            clean, depth = clean_crop(src, size, rng, None)
            cycle = ranges
            if ranges.sigmas:  # source j on pass p gets sigma number (j + p) mod len(sigmas)
                n_src, n_sig = len(sources), len(ranges.sigmas)
                cycle = dataclasses.replace(ranges, sigmas=(ranges.sigmas[(k % n_src + k // n_src) % n_sig],))
            img, params = degrade(clean, depth, present, rng, cycle)
            params.pop("rain_map", None)
            if final_transform is not None:
                img = final_transform(img)
            out.append({"image": img, "target": np.array([t in present for t in labels], bool),
                        "set": set_name(present), "source": src.name, "params": params})
    return out
