"""Restore images larger than memory allows, tile by tile, with seamless blending.

TextPromptIR's cost is linear in the number of pixels (transposed attention, Restormer
Sec. 3.1), but its activations are wide: a forward needs a few kB per pixel, so a
12-Mpx photo does not fit in 24 GiB at once. :func:`restore_tiled` runs the network on
overlapping square tiles and blends them with raised-cosine ramps over the overlaps;
:func:`auto_tile_size` decides from the memory budget whether tiling is needed at all.
"""
from __future__ import annotations

import math
import os

import torch
import torch.nn as nn

from net.model import ModelConfig, pad_to_multiple
from utils.progress import progress as progress_bar
from utils.runtime.allocator import malloc_free_heap_bytes

# Fixed per-pixel cost of a whole-image run outside the network: the input photo and
# result as numpy arrays, the float tensors, the blending accumulators (bytes).
IMAGE_BYTES_PER_PIXEL = 96
CPU_BUDGET_FRACTION = 0.5  # of MemAvailable
CUDA_BUDGET_FRACTION = 0.8  # of free GPU memory
MIN_TILE = 64


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of size ``tile`` covering ``[0, length)`` with at least
    ``overlap`` pixels shared by neighbours. The tiles are spread evenly, so the first
    starts at 0 and the last ends at ``length``: border tiles are shifted inside the
    image instead of being padded."""
    if length <= tile:
        return [0]
    n = 1 + math.ceil((length - tile) / (tile - overlap))
    return [round(i * (length - tile) / (n - 1)) for i in range(n)]


def _ramp(n: int, overlap: int, rise: bool, fall: bool) -> torch.Tensor:
    """1-D blending weights of one tile: raised-cosine ramps over ``overlap`` pixels on
    the sides that have a neighbour, 1 elsewhere. A rising and a falling ramp over the
    same pixels sum to exactly 1, and no weight is 0, so normalising never divides by 0."""
    w = torch.ones(n, dtype=torch.float32)
    k = min(overlap, n)
    if k > 0:
        up = torch.sin(math.pi / 2 * (torch.arange(k, dtype=torch.float32) + 0.5) / k) ** 2
        if rise:
            w[:k] *= up
        if fall:
            w[n - k:] *= up.flip(0)
    return w


@torch.no_grad()
def restore_tiled(model: nn.Module, img: torch.Tensor, embedding: torch.Tensor, tile: int, overlap: int,
                  progress: bool = False) -> torch.Tensor:
    """Run ``model(img, embedding)`` on overlapping ``tile``×``tile`` crops and blend them.

    ``img`` (1,3,H,W) may stay on the CPU while the model lives on the GPU: each tile is
    moved to the model's device and back, so only one tile's activations are resident.
    The result is (1,3,H,W) float32 on ``img``'s device. Weights are separable
    raised-cosine ramps, normalised by their sum, so there are no seams.
    """
    if img.dim() != 4 or img.shape[0] != 1:
        raise ValueError(f"restore_tiled expects one image (1,3,H,W), got {tuple(img.shape)}")
    if tile <= 0 or not 0 <= overlap < tile:
        raise ValueError(f"need tile > 0 and 0 <= overlap < tile, got tile={tile}, overlap={overlap}")
    dev = next(model.parameters()).device
    h0, w0 = img.shape[-2:]
    # pad as TextPromptIR.forward does for a whole image, so that the border tiles see the
    # same context as an untiled run
    img = pad_to_multiple(img)
    h, w = img.shape[-2:]
    th, tw = min(tile, h), min(tile, w)
    ys, xs = tile_starts(h, th, overlap), tile_starts(w, tw, overlap)
    out = torch.zeros(1, 3, h, w, dtype=torch.float32, device=img.device)
    norm = torch.zeros(1, 1, h, w, dtype=torch.float32, device=img.device)
    embedding = embedding.to(dev)
    bar = progress_bar(len(ys) * len(xs), "tiles", enabled=progress, leave=False)
    for i, y in enumerate(ys):
        wy = _ramp(th, overlap, rise=i > 0, fall=i < len(ys) - 1)
        for j, x in enumerate(xs):
            wx = _ramp(tw, overlap, rise=j > 0, fall=j < len(xs) - 1)
            weight = (wy[:, None] * wx[None, :]).to(img.device)  # (th, tw)
            crop = img[..., y:y + th, x:x + tw].to(dev)
            res = model(crop, embedding).float().to(img.device)  # (1, 3, th, tw)
            out[..., y:y + th, x:x + tw].addcmul_(res, weight)
            norm[..., y:y + th, x:x + tw] += weight
            bar.update(1)
    bar.close()
    return out.div_(norm)[..., :h0, :w0]


def activation_bytes_per_pixel(config: ModelConfig) -> float:
    """Estimated peak activation memory of one fp32 forward, in bytes per input pixel.

    The peak is reached in the full-resolution decoder/refinement blocks (2·dim
    channels): GDFN holds its ``project_in`` and depthwise outputs (2 × 2·e·2·dim
    channels for expansion e) while the block input, the modulated input and the
    encoder skips stay alive. That is about ``dim·(8e + 20) + 100`` floats per pixel;
    the constants were fitted so the estimate is at or above the peak RSS growth
    measured on CPU (VmHWM, 512² and 768² inputs): dim 8 → 1.58 kB/px measured vs
    1.68 estimated, dim 16 → 2.15 vs 2.96, dim 32 → 4.91 vs 5.52, dim 48 (paper) →
    7.24 vs 8.08.
    """
    return 4.0 * (config.dim * (8 * config.ffn_expansion_factor + 20) + 100)


def available_memory_bytes() -> int:
    """MemAvailable from /proc/meminfo (Linux) plus the free memory this process keeps in its
    malloc heap (``utils.runtime.allocator``), else free physical pages via sysconf."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024 + malloc_free_heap_bytes()
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 4 << 30  # unknown platform: assume 4 GiB


def memory_budget(device: torch.device | str) -> int:
    """Bytes one restoration may use: half of the available RAM on CPU, 80% of the free
    memory of the GPU on CUDA."""
    device = torch.device(device)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free * CUDA_BUDGET_FRACTION)
    return int(available_memory_bytes() * CPU_BUDGET_FRACTION)


def auto_tile_size(h: int, w: int, config: ModelConfig, device: torch.device | str,
                   budget_bytes: int | None = None) -> int | None:
    """Tile side to use for an ``h``×``w`` image, or ``None`` when the whole image fits.

    The activation estimate of :func:`activation_bytes_per_pixel` times the pixel count
    (plus the image buffers themselves) is compared with ``budget_bytes`` (default
    :func:`memory_budget` of ``device``). When it does not fit, the largest square tile,
    a multiple of 8 and at least 64, whose forward fits in what is left is returned:
    large tiles keep the global statistics of the attention close to the untiled run.
    """
    budget = memory_budget(device) if budget_bytes is None else int(budget_bytes)
    per_px = activation_bytes_per_pixel(config)
    on_cpu = torch.device(device).type == "cpu"
    fixed = h * w * IMAGE_BYTES_PER_PIXEL if on_cpu else 0  # image buffers live in RAM
    if h * w * per_px + fixed <= budget:
        return None
    side = math.isqrt(max(budget - fixed, 0) // int(per_px) + 1)
    return max(MIN_TILE, side // 8 * 8)
