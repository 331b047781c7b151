"""The paper's test protocol (Sec. 4.1): centre-crop to a multiple of 16, then scikit-image
PSNR / SSIM on RGB in [0, 1] (optionally on the Y channel)."""
from __future__ import annotations

import numpy as np
import torch
from skimage.color import rgb2ycbcr
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

CROP_MULTIPLE = 16  # the protocol's centre crop (the official crop_img)
SSIM_WINDOW = 7  # scikit-image's default SSIM window: an image must be at least this wide and high


def min_test_side(crop16: bool) -> int:
    """The smallest side an image may have under the protocol: the crop to a multiple of 16 must
    leave at least 16 pixels, and without the crop SSIM needs its 7x7 window."""
    return CROP_MULTIPLE if crop16 else SSIM_WINDOW


def crop_to_multiple(img: np.ndarray, base: int = CROP_MULTIPLE) -> np.ndarray:
    """Centre-crop an HxW[xC] image so both sides are multiples of ``base`` (the official
    ``crop_img``)."""
    h, w = img.shape[:2]
    top, left = (h % base) // 2, (w % base) // 2
    return img[top:top + h - h % base, left:left + w - w % base]


def to_numpy_image(x: torch.Tensor) -> np.ndarray:
    """(3, H, W) or (1, 3, H, W) tensor in [0, 1] -> (H, W, 3) float64 array, clipped."""
    if x.dim() == 4:
        x = x[0]
    return x.detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy().astype(np.float64)


def psnr_ssim(restored: np.ndarray, target: np.ndarray, y_channel: bool = False) -> tuple[float, float]:
    """PSNR (dB) and SSIM of two (H, W, 3) images in [0, 1]."""
    if y_channel:
        restored = rgb2ycbcr(restored)[..., 0] / 255.0
        target = rgb2ycbcr(target)[..., 0] / 255.0
        ssim = structural_similarity(target, restored, data_range=1.0, win_size=SSIM_WINDOW)
    else:
        ssim = structural_similarity(target, restored, data_range=1.0, channel_axis=-1, win_size=SSIM_WINDOW)
    psnr = peak_signal_noise_ratio(target, restored, data_range=1.0)
    return float(psnr), float(ssim)
