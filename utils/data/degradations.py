"""Synthetic degradations: the paper's Gaussian noise, Rain100L-like rain and OTS-like haze, and for the
five-task setting GoPro-like motion blur and LOL-like low light.

Noise follows the paper's protocol exactly (Sec. 4.1, as in PromptIR/AirNet): float Gaussian noise
N(0, sigma) in grey levels is added to the uint8 image, the sum is clipped to [0, 255] and cast to uint8.
Like the official code (``np.clip(...).astype(np.uint8)``), the cast TRUNCATES, which biases the noisy
image by -0.5 grey level on average; we keep it so input PSNRs match the published protocol.

Rain and haze build the bundled demo set (``utils/data/demo_data.py``) and, with ``--synthesize``, the
training inputs drawn anew per sample (``utils/data/train_set.py``); the paper trains on Rain100L and
RESIDE OTS. Both are calibrated against the statistics of the real benchmarks (the targets and the
measured values: ``docs/benchmarks/calibration.md#noise-rain-and-haze``):

* rain: a streak layer (sparse random drops, motion-blurred along one direction per image, widened
  by a small Gaussian blur) is screen-blended onto the image, I = 1 - (1 - J)(1 - R). Screen blending
  only brightens, as Rain100L's residual does.
* haze: the atmospheric scattering model used to synthesise RESIDE OTS,
  I = J t + A (1 - t), t = exp(-beta d), with A and beta from OTS's grids (``OTS_A``, ``OTS_BETA``).
"""
from __future__ import annotations

import hashlib
from collections.abc import Callable

import cv2
import numpy as np
from skimage.feature import structure_tensor  # only for calibration

from utils.metrics import crop_to_multiple, psnr_ssim

# --- Gaussian noise (paper protocol) -------------------------------------------------------------


def add_gaussian_noise(img: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Add N(0, sigma) noise (grey levels) to a uint8 image, clip to [0, 255], truncate to uint8.

    This is the paper's protocol for denoising (sigma in {15, 25, 50}), training and test alike.
    """
    if img.dtype != np.uint8:
        raise TypeError(f"add_gaussian_noise expects a uint8 image, got {img.dtype}")
    noise = rng.standard_normal(img.shape, dtype=np.float32) * np.float32(sigma)
    return np.clip(img.astype(np.float32) + noise, 0.0, 255.0).astype(np.uint8)


def benchmark_noise_seed(name: str, sigma: int, base_seed: int = 0) -> int:
    """A stable 63-bit seed for the test noise of one image.

    Derived from the image's file name, sigma and a base seed with BLAKE2b (not Python's salted
    ``hash()``), so the noisy test input does not depend on listing order, worker count or the run.
    """
    # surrogateescape: a file name that is not UTF-8 hashes its own bytes (valid names are unchanged)
    key = f"{name}|{int(sigma)}|{int(base_seed)}".encode("utf-8", "surrogateescape")
    digest = hashlib.blake2b(key, digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1




# --- Rain (demo set) ----------------------------------------------------------------------------

# Quantiles of the streak tilt from vertical measured on Rain100L (docs/benchmarks/calibration.md#noise-rain-and-haze): we draw the tilt
# by inverse-CDF interpolation through them, so the demo's tilt distribution matches by construction.
RAIN_TILT_QUANTILES = ((0.0, 0.1, 0.5, 0.9, 1.0), (0.0, 3.0, 14.0, 32.0, 42.0))


def _streak_kernel(length: int, angle_deg: float, width: float) -> np.ndarray:
    """A line of ``length`` pixels through the kernel centre, ``angle_deg`` from vertical, with a
    Gaussian cross-section of std ``width``; peak value 1 so a drop keeps its brightness."""
    size = length + 4 + 2 * int(np.ceil(3 * width))
    size += 1 - size % 2  # odd, so the line is centred
    kernel = np.zeros((size, size), np.float32)
    c = size // 2
    theta = np.deg2rad(angle_deg)
    dx, dy = np.sin(theta) * (length - 1) / 2, np.cos(theta) * (length - 1) / 2
    # Anti-aliased line drawn with 4 bits of sub-pixel precision.
    shift = 4
    p0 = (int(round((c - dx) * 16)), int(round((c - dy) * 16)))
    p1 = (int(round((c + dx) * 16)), int(round((c + dy) * 16)))
    cv2.line(kernel, p0, p1, 1.0, 1, cv2.LINE_AA, shift)
    if width > 0:
        kernel = cv2.GaussianBlur(kernel, (0, 0), width)
    return kernel / max(float(kernel.max()), 1e-6)


def rain_layer(
    shape: tuple[int, int],
    rng: np.random.Generator,
    density: tuple[float, float] = (0.0012, 0.0030),
    length: tuple[int, int] = (14, 34),
    width: tuple[float, float] = (0.7, 1.1),
    brightness: tuple[float, float] = (0.27, 0.50),
) -> tuple[np.ndarray, dict]:
    """A float32 HxW rain-streak layer in [0, 1] and the parameters drawn for it.

    Sparse random drops (Bernoulli(density) per pixel, brightness varying per drop) are motion-blurred
    along one direction (tilt drawn from ``RAIN_TILT_QUANTILES``, random sign) with a streak of random
    length and width. Defaults are calibrated to Rain100L (``docs/benchmarks/calibration.md#noise-rain-and-haze``).
    """
    h, w = shape
    tilt = float(np.interp(rng.random(), *RAIN_TILT_QUANTILES)) * (1.0 if rng.random() < 0.5 else -1.0)
    params = {
        "tilt_deg": tilt,
        "density": float(rng.uniform(*density)),
        "length": int(rng.integers(length[0], length[1] + 1)),
        "width": float(rng.uniform(*width)),
        "brightness": float(rng.uniform(*brightness)),
    }
    kernel = _streak_kernel(params["length"], tilt, params["width"])
    pad = kernel.shape[0]  # drops outside the frame also leave streaks inside it
    drops = (rng.random((h + 2 * pad, w + 2 * pad)) < params["density"]).astype(np.float32)
    drops *= rng.uniform(0.5, 1.0, drops.shape).astype(np.float32)
    layer = cv2.filter2D(drops, -1, kernel, borderType=cv2.BORDER_CONSTANT)[pad:-pad, pad:-pad]
    return np.clip(layer * params["brightness"], 0.0, 1.0), params


def synth_rain(img: np.ndarray, rng: np.random.Generator, **layer_kwargs) -> np.ndarray:
    """Add light rain like Rain100L to a uint8 RGB image: screen-blend a streak layer (see
    :func:`rain_layer`); returns uint8 (rounded)."""
    layer, _ = rain_layer(img.shape[:2], rng, **layer_kwargs)
    clean = img.astype(np.float32) / 255.0
    rainy = 1.0 - (1.0 - clean) * (1.0 - layer[..., None])  # screen blend, HxWx3
    return np.clip(np.rint(rainy * 255.0), 0, 255).astype(np.uint8)


# --- Haze (demo set) ----------------------------------------------------------------------------

# OTS's grids of atmospheric light and scattering coefficient (file names ID_A_beta.jpg).
OTS_A = (0.8, 0.85, 0.9, 0.95, 1.0)
OTS_BETA = (0.04, 0.06, 0.08, 0.1, 0.12, 0.16, 0.2)
# ... and the ranges they span, for haze drawn on the fly (TrainDataset --synthesize dehaze)
OTS_A_RANGE, OTS_BETA_RANGE = (min(OTS_A), max(OTS_A)), (min(OTS_BETA), max(OTS_BETA))
# Depth scale: d = HAZE_DEPTH_SCALE * depth, depth in [0, 1]. OTS's depths come from a monocular depth
# network in metre-like units; we calibrated this scale so the demo's input PSNR/SSIM over OTS's
# (A, beta) grid match SOTS outdoor (docs/benchmarks/calibration.md#noise-rain-and-haze).
HAZE_DEPTH_SCALE = 5.5
HAZE_DEPTH_OFFSET = 0.9  # nearest point: even the foreground sits behind some air, as in OTS


def synth_haze(
    img: np.ndarray,
    depth: np.ndarray,
    rng: np.random.Generator,
    A: tuple[float, float] | float = OTS_A_RANGE,
    beta: tuple[float, float] | float = OTS_BETA_RANGE,
    depth_scale: float = HAZE_DEPTH_SCALE,
    depth_offset: float = HAZE_DEPTH_OFFSET,
) -> tuple[np.ndarray, dict]:
    """Haze a uint8 RGB image with the atmospheric scattering model (RESIDE OTS):
    I = J t + A (1 - t), t = exp(-beta d), d = depth_offset + depth_scale * depth.

    ``depth`` is HxW in [0, 1], larger = farther. ``A``/``beta`` are fixed values or (low, high)
    ranges drawn uniformly. Returns the hazy uint8 image (rounded) and ``{"A", "beta"}``.
    """
    a = float(rng.uniform(*A)) if isinstance(A, tuple) else float(A)
    b = float(rng.uniform(*beta)) if isinstance(beta, tuple) else float(beta)
    d = depth_offset + depth_scale * np.clip(depth.astype(np.float32), 0.0, 1.0)
    t = np.exp(-b * d)[..., None]  # HxWx1 transmission
    clean = img.astype(np.float32) / 255.0
    hazy = clean * t + a * (1.0 - t)
    return np.clip(np.rint(hazy * 255.0), 0, 255).astype(np.uint8), {"A": a, "beta": b}


def depth_from_disparity(disparity: np.ndarray) -> np.ndarray:
    """Depth in [0, 1] (larger = farther) from a stereo disparity map: depth is proportional to
    1/disparity (pinhole stereo), scaled so the 1st/99th percentiles of the valid pixels map to 0/1.
    Invalid pixels (inf, nan, <= 0: occlusions) are inpainted from their neighbours, and a 5x5 median
    filter removes isolated mismatches."""
    disp = disparity.astype(np.float32)
    invalid = ~np.isfinite(disp) | (disp <= 0)
    inv = np.zeros_like(disp)
    inv[~invalid] = 1.0 / disp[~invalid]
    lo, hi = np.percentile(inv[~invalid], [1, 99])  # robust to stray matches
    depth = np.clip((inv - lo) / max(float(hi - lo), 1e-6), 0.0, 1.0).astype(np.float32)
    if invalid.any():
        depth = cv2.inpaint(depth, invalid.astype(np.uint8), 5, cv2.INPAINT_TELEA)
    depth = cv2.medianBlur(depth, 5)  # removes the speckle of isolated mismatches
    return np.clip(depth, 0.0, 1.0)


def depth_proxy(img: np.ndarray) -> np.ndarray:
    """A depth proxy in [0, 1] (larger = farther) for photos without measured depth.

    Two cues that hold for most outdoor shots: the ground recedes toward the horizon, so higher in the
    frame is usually farther (weight 0.7, linear from 1 at the top to 0 at the bottom), and bright,
    smooth regions are usually sky or distant haze-lit background (weight 0.3, luminance blurred with
    a sigma of 1/8 of the image size so the proxy never follows fine texture).
    """
    h, w = img.shape[:2]
    rows = np.linspace(1.0, 0.0, h, dtype=np.float32)[:, None] * np.ones((1, w), np.float32)
    lum = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0
    lum = cv2.GaussianBlur(lum, (0, 0), max(h, w) / 8.0)
    return np.clip(0.7 * rows + 0.3 * lum, 0.0, 1.0)


# --- Calibration measurements ---------------------------------------------------------------------


def input_quality(degraded: np.ndarray, clean: np.ndarray) -> tuple[float, float]:
    """PSNR (dB) and SSIM of a degraded uint8 RGB image against its clean target, by the calibration
    protocol (test/README.md): centre-cropped to a multiple of 16, RGB in [0, 1], scikit-image metrics."""
    x, y = (crop_to_multiple(im).astype(np.float64) / 255.0 for im in (degraded, clean))
    return psnr_ssim(x, y)


def rain_statistics(rainy: np.ndarray, clean: np.ndarray) -> dict:
    """The Rain100L rain-layer statistics of the calibration (docs/benchmarks/calibration.md) for one uint8 RGB pair: mean residual,
    fraction brightened by > 0.05, 99th-percentile residual, and the streak tilt from vertical (deg)
    from the image's structure tensor (residual = input - target, averaged over RGB, in [0, 1])."""
    residual = (rainy.astype(np.float64) - clean.astype(np.float64)).mean(axis=2) / 255.0
    a_rr, a_rc, a_cc = structure_tensor(residual, sigma=1.0, order="rc")
    s_rr, s_rc, s_cc = float(a_rr.sum()), float(a_rc.sum()), float(a_cc.sum())
    # Dominant gradient orientation, measured from the column (horizontal) axis; streaks run
    # perpendicular to it, so this is also the streaks' tilt from vertical.
    tilt = 0.5 * np.degrees(np.arctan2(2.0 * s_rc, s_cc - s_rr))
    return {
        "mean_residual": float(residual.mean()),
        "frac_brightened": float((residual > 0.05).mean()),
        "p99": float(np.percentile(residual, 99)),
        "tilt_deg": float(abs(tilt)),
    }


# --- Motion blur (demo set) ---------------------------------------------------------------------

# GoPro's blurred frames average 7-13 consecutive sharp frames of a hand-held camera (Nah et al., CVPR 2017;
# the author in SeungjunNah/DeepDeblur_release issue 59). We blur with random camera-shake kernels: the
# path of a point under a hand's shake, a 2-D random walk with inertia (after Boracchi & Foi, TIP 2012),
# rasterised and normalised to sum 1. Its extent is calibrated so the demo's blurred-input PSNR is near
# GoPro test's (the target and the measured values, with their sources: docs/benchmarks/calibration.md#motion-blur-and-low-light).
BLUR_EXTENT = (10.0, 28.0)  # length of the shake path in pixels, drawn uniformly
BLUR_KERNEL = 37  # kernel side (odd), larger than any path


def shake_kernel(rng: np.random.Generator, extent: tuple[float, float] | float = BLUR_EXTENT,
                 size: int = BLUR_KERNEL, steps: int = 64) -> np.ndarray:
    """A float32 ``size``x``size`` camera-shake kernel summing to 1: a random walk whose velocity turns
    smoothly (inertia) and sometimes jerks, scaled to a path of ``extent`` pixels and centred."""
    length = float(rng.uniform(*extent)) if isinstance(extent, tuple) else float(extent)
    angle = rng.uniform(0, 2 * np.pi)
    velocity = np.array([np.cos(angle), np.sin(angle)])
    points = [np.zeros(2)]
    for _ in range(steps - 1):
        turn = rng.normal(0.0, 0.35) + (rng.normal(0.0, 1.2) if rng.random() < 0.05 else 0.0)  # jerk
        c, s = np.cos(turn), np.sin(turn)
        velocity = np.array([c * velocity[0] - s * velocity[1], s * velocity[0] + c * velocity[1]])
        velocity = 0.8 * velocity + 0.2 * rng.normal(0.0, 1.0, 2)
        points.append(points[-1] + velocity / max(np.linalg.norm(velocity), 1e-6))
    path = np.array(points)  # (steps, 2) as (x, y)
    travelled = float(np.sum(np.linalg.norm(np.diff(path, axis=0), axis=1)))
    path = path * (length / max(travelled, 1e-6))
    path -= (path.max(axis=0) + path.min(axis=0)) / 2  # centre the path's bounding box
    path = np.clip(path + size // 2, 0, size - 1.001)
    kernel = np.zeros((size, size), np.float64)
    for x, y in path:  # bilinear splat of each point of the path
        x0, y0 = int(x), int(y)
        fx, fy = x - x0, y - y0
        kernel[y0, x0] += (1 - fx) * (1 - fy)
        kernel[y0, x0 + 1] += fx * (1 - fy)
        kernel[y0 + 1, x0] += (1 - fx) * fy
        kernel[y0 + 1, x0 + 1] += fx * fy
    return (kernel / kernel.sum()).astype(np.float32)


def synth_motion_blur(img: np.ndarray, rng: np.random.Generator, **kernel_kwargs) -> np.ndarray:
    """Blur a uint8 RGB image with one random camera-shake kernel (:func:`shake_kernel`), edges
    reflected; returns uint8 (rounded)."""
    kernel = shake_kernel(rng, **kernel_kwargs)
    blurred = cv2.filter2D(img.astype(np.float32), -1, kernel, borderType=cv2.BORDER_REFLECT)
    return np.clip(np.rint(blurred), 0, 255).astype(np.uint8)


# --- Low light (demo set) -----------------------------------------------------------------------

# LOL-v1's low-light shots were taken with a short exposure (and low ISO) of the same scene, so they are
# dark and noisy (Wei et al., BMVC 2018, Sec. 3). We darken in linear light (sRGB decoded by gamma 2.2),
# scale by an exposure factor, add the sensor's signal-dependent shot noise and its read noise there, and
# encode again. The exposure range is calibrated so the demo's input PSNR is near LOL-v1 eval15's
# (the target and the measured values, with their sources: docs/benchmarks/calibration.md#motion-blur-and-low-light).
LOWLIGHT_EXPOSURE = (0.004, 0.015)  # fraction of the normal exposure, drawn log-uniformly
LOWLIGHT_SHOT = 0.0003  # shot-noise variance per unit of linear signal (at the dark exposure)
LOWLIGHT_READ = 0.001  # read-noise std in linear units
DISPLAY_GAMMA = 2.2


def synth_low_light(img: np.ndarray, rng: np.random.Generator,
                    exposure: tuple[float, float] | float = LOWLIGHT_EXPOSURE,
                    shot: float = LOWLIGHT_SHOT, read: float = LOWLIGHT_READ) -> np.ndarray:
    """A short-exposure version of a uint8 RGB image: linear light x ``exposure`` plus
    Poisson-Gaussian sensor noise (variance ``shot`` x signal + ``read``²), re-encoded; uint8 (rounded)."""
    k = float(np.exp(rng.uniform(*np.log(exposure)))) if isinstance(exposure, tuple) else float(exposure)
    linear = (img.astype(np.float32) / 255.0) ** DISPLAY_GAMMA * np.float32(k)
    std = np.sqrt(np.float32(shot) * linear + np.float32(read) ** 2)
    noisy = np.clip(linear + std * rng.standard_normal(img.shape, dtype=np.float32), 0.0, 1.0)
    return np.clip(np.rint(noisy ** (1.0 / DISPLAY_GAMMA) * 255.0), 0, 255).astype(np.uint8)


# --- One photo, each paired task's degradation ---------------------------------------------------

# How a clean uint8 RGB photo is drawn with each degradation that has a paired test set: rain like
# Rain100L, OTS haze over the photo's depth proxy, the demo's camera shake and short exposure (noise
# has no pair: the protocol adds it at test time). Used by utils/eval/drawn_pairs.py and utils/eval/no_harm.py.
DRAWN: dict[str, Callable[[np.ndarray, np.random.Generator], np.ndarray]] = {
    "derain": synth_rain,
    "dehaze": lambda img, rng: synth_haze(img, depth_proxy(img), rng)[0],
    "deblur": synth_motion_blur,
    "lowlight": synth_low_light,
}
