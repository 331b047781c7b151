"""utils/data/degradations.py: the paper's noise protocol, demo rain/haze and their calibration."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from utils.data import degradations as deg
from utils.data.demo_data import measure_calibration

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def calibration():
    return measure_calibration(seed=0, draws=3)


def _image(seed=0, h=64, w=96):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


# --- noise ----------------------------------------------------------------------------------------


def test_noise_is_added_clipped_and_truncated_as_the_paper():
    img = _image()
    noisy = deg.add_gaussian_noise(img, 25, np.random.default_rng(3))
    noise = np.random.default_rng(3).standard_normal(img.shape, dtype=np.float32) * np.float32(25)
    expected = np.clip(img.astype(np.float32) + noise, 0, 255).astype(np.uint8)  # astype truncates
    assert noisy.dtype == np.uint8 and np.array_equal(noisy, expected)


def test_noise_level_and_determinism():
    grey = np.full((200, 200, 3), 128, np.uint8)
    a = deg.add_gaussian_noise(grey, 15, np.random.default_rng(1))
    b = deg.add_gaussian_noise(grey, 15, np.random.default_rng(1))
    assert np.array_equal(a, b)
    residual = a.astype(np.float64) - 128
    assert abs(residual.std() - 15) < 0.5
    assert abs(residual.mean() + 0.5) < 0.2  # truncation bias of the official protocol
    with pytest.raises(TypeError):
        deg.add_gaussian_noise(grey.astype(np.float32), 15, np.random.default_rng(1))


def test_noise_seed_is_stable_across_processes_and_distinct():
    seeds = {deg.benchmark_noise_seed(n, s) for n in ("0001.png", "0002.png") for s in (15, 25, 50)}
    assert len(seeds) == 6
    assert deg.benchmark_noise_seed("a.png", 25, base_seed=1) != deg.benchmark_noise_seed("a.png", 25)
    code = "from utils.data.degradations import benchmark_noise_seed; print(benchmark_noise_seed('0001.png', 25))"
    outs = set()
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        outs.add(subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True,
                                text=True, check=True).stdout.strip())
    assert outs == {str(deg.benchmark_noise_seed("0001.png", 25))}


# --- rain -----------------------------------------------------------------------------------------


def test_rain_only_brightens_and_is_deterministic():
    img = _image(1, 128, 128)
    a = deg.synth_rain(img, np.random.default_rng(5))
    assert a.dtype == np.uint8 and a.shape == img.shape
    assert np.array_equal(a, deg.synth_rain(img, np.random.default_rng(5)))
    assert (a >= img).all() and (a > img).any()


def test_rain_has_one_direction_near_the_drawn_tilt():
    """Long streaks, so the structure tensor sees their direction clearly (short, wide streaks read
    as more vertical than drawn)."""
    clean = np.full((256, 256, 3), 60, np.uint8)
    for seed in range(6):
        kwargs = {"length": (30, 34), "width": (0.7, 0.8)}
        layer, params = deg.rain_layer((256, 256), np.random.default_rng(seed), **kwargs)
        rainy = deg.synth_rain(clean, np.random.default_rng(seed), **kwargs)
        measured = deg.rain_statistics(rainy, clean)["tilt_deg"]
        assert abs(measured - abs(params["tilt_deg"])) < 4.0, (seed, measured, params)
        assert 0.0 <= layer.min() and layer.max() <= 1.0


def test_rain_matches_rain100l_statistics(calibration):
    """Bands around the Rain100L calibration targets (docs/benchmarks/calibration.md#noise-rain-and-haze)."""
    rain = calibration["rain"]
    assert 23.0 < rain["psnr"] < 28.0  # Rain100L 25.52
    assert 0.74 < rain["ssim"] < 0.88  # 0.814
    assert 0.014 < rain["mean_residual"] < 0.030  # 0.022
    assert 0.08 < rain["frac_brightened"] < 0.19  # 0.13 (0.05 .. 0.18)
    assert 0.18 < rain["p99"] < 0.34  # 0.26
    assert 8.0 < rain["tilt_median"] < 20.0  # 14 degrees
    assert rain["tilt_p10"] < 7.0 and 20.0 < rain["tilt_p90"] < 40.0  # 3 and 30 degrees


# --- haze -----------------------------------------------------------------------------------------


def test_haze_follows_the_scattering_model():
    img = _image(2)
    depth = np.full(img.shape[:2], 0.5, np.float32)
    hazy, params = deg.synth_haze(img, depth, np.random.default_rng(0), A=0.9, beta=0.1)
    t = np.exp(-0.1 * (deg.HAZE_DEPTH_OFFSET + deg.HAZE_DEPTH_SCALE * 0.5))
    expected = img / 255.0 * t + 0.9 * (1 - t)
    assert params == {"A": 0.9, "beta": 0.1}
    assert np.abs(hazy / 255.0 - expected).max() <= 0.5 / 255 + 1e-6
    _, drawn = deg.synth_haze(img, depth, np.random.default_rng(0))
    assert 0.8 <= drawn["A"] <= 1.0 and 0.04 <= drawn["beta"] <= 0.2


def test_farther_is_hazier():
    img = np.zeros((32, 32, 3), np.uint8)
    depth = np.tile(np.linspace(0, 1, 32, dtype=np.float32), (32, 1))
    hazy, _ = deg.synth_haze(img, depth, np.random.default_rng(0), A=1.0, beta=0.2)
    assert np.all(np.diff(hazy[0, :, 0].astype(int)) >= 0) and hazy[0, -1, 0] > hazy[0, 0, 0]


def test_depth_from_disparity_inverts_and_fills_invalid():
    disparity = np.tile(np.linspace(60, 6, 64, dtype=np.float32)[:, None], (1, 48))  # far at the bottom
    disparity[10:14, 20:24] = np.inf
    disparity[30, 5] = 0
    depth = deg.depth_from_disparity(disparity)
    assert depth.shape == disparity.shape and np.isfinite(depth).all()
    assert depth.min() >= 0 and depth.max() <= 1
    assert depth[-5:].mean() > depth[:5].mean()  # small disparity = far
    assert abs(depth[12, 22] - depth[12, 30]) < 0.1  # invalid hole filled from its neighbours


def test_depth_proxy_puts_the_top_farther():
    depth = deg.depth_proxy(np.full((40, 60, 3), 100, np.uint8))
    assert depth.shape == (40, 60) and depth[0].mean() > depth[-1].mean()


def test_haze_matches_sots_statistics(calibration):
    haze = calibration["haze"]
    assert 15.0 < haze["psnr"] < 19.5  # SOTS outdoor 16.94
    assert 0.78 < haze["ssim"] < 0.92  # 0.847


@pytest.mark.parametrize("sigma,target", [(15, 24.83), (25, 20.54), (50, 15.00)])
def test_noise_matches_cbsd68_psnr(calibration, sigma, target):
    assert abs(calibration[f"noise_{sigma}"]["psnr"] - target) < 0.6
