"""Tiled restoration: tile placement, exact blending weights, no seams, agreement with an
untiled run of the demo-preset network, and the automatic tile size."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn

from net.model import ModelConfig, TextPromptIR
from utils.runtime.tiling import (
    IMAGE_BYTES_PER_PIXEL,
    MIN_TILE,
    activation_bytes_per_pixel,
    auto_tile_size,
    memory_budget,
    restore_tiled,
    tile_starts,
)

DEMO_NET = ModelConfig(text_dim=384, dim=16, num_blocks=(1, 2, 2, 2), num_refinement_blocks=1, heads=(1, 2, 4, 8))


class Identity(nn.Module):
    """Returns its input; has one parameter so restore_tiled can find the device."""

    def __init__(self) -> None:
        super().__init__()
        self.p = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        return x.clone()


class TileMean(nn.Module):
    """Replaces a tile by its per-channel mean: stitching such tiles with hard cuts would
    show a step at every tile border."""

    def __init__(self) -> None:
        super().__init__()
        self.p = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3), keepdim=True).expand_as(x).clone()


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return 10 * math.log10(1.0 / (a - b).pow(2).mean().item())


@pytest.mark.parametrize("length,tile,overlap", [(100, 32, 8), (33, 32, 8), (32, 32, 8), (20, 32, 8),
                                                 (1000, 512, 32), (257, 64, 0)])
def test_tiles_cover_the_image_inside_its_borders(length, tile, overlap):
    t = min(tile, length)
    starts = tile_starts(length, t, overlap)
    assert starts[0] == 0 and starts[-1] + t == length  # border tiles shifted inside, no padding
    assert starts == sorted(set(starts))
    for a, b in zip(starts, starts[1:]):
        assert a + t - b >= overlap  # neighbours share at least `overlap` pixels


@pytest.mark.parametrize("h,w,tile,overlap", [(37, 53, 16, 4), (64, 64, 32, 16), (50, 20, 24, 0), (9, 70, 16, 8)])
def test_blending_weights_sum_to_one(h, w, tile, overlap):
    img = torch.rand(1, 3, h, w)
    out = restore_tiled(Identity(), img, torch.zeros(1, 4), tile, overlap)
    assert out.shape == img.shape
    torch.testing.assert_close(out, img, atol=1e-6, rtol=0)


def test_no_seams_between_tiles():
    h, w, tile, overlap = 96, 160, 48, 16
    ramp = torch.linspace(0, 1, w).expand(1, 3, h, w).contiguous()  # left-to-right gradient
    tiles = restore_tiled(TileMean(), ramp, torch.zeros(1, 4), tile, overlap)
    starts = tile_starts(w, tile, overlap)
    means = [ramp[..., s:s + tile].mean().item() for s in starts]
    step = max(abs(a - b) for a, b in zip(means, means[1:]))  # jump a hard cut would show
    jumps = (tiles[..., 1:] - tiles[..., :-1]).abs().max().item()
    # raised-cosine blending spreads each step over the overlap: slope <= pi/2 * step / overlap
    assert jumps <= math.pi / 2 * step / overlap + 1e-6
    assert jumps < 0.2 * step


def test_tiled_matches_untiled_demo_preset():
    """The criterion: PSNR(tiled, untiled) >= 40 dB on a 300x200 image with the demo
    preset. The random-init net changes the image a lot, so agreement is not trivial."""
    torch.manual_seed(0)
    net = TextPromptIR(DEMO_NET).eval()
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 200), torch.linspace(0, 1, 300), indexing="ij")
    img = (torch.stack([yy, xx, (yy + xx) / 2])[None] + 0.1 * torch.randn(1, 3, 200, 300)).clamp(0, 1)
    embedding = torch.randn(1, 384)  # (1, text_dim)
    with torch.inference_mode():
        whole = net(img, embedding)
        tiled = restore_tiled(net, img, embedding, tile=128, overlap=32)
    change = (whole - img).pow(2).mean().sqrt().item()
    p = psnr(tiled, whole)
    print(f"demo preset, 300x200, tile 128 / overlap 32: PSNR(tiled, untiled) = {p:.2f} dB "
          f"(the net changes the image by {change:.3f} RMS)")
    assert change > 0.02
    assert p >= 40.0


def test_auto_tile_size_follows_the_budget():
    per_px = activation_bytes_per_pixel(DEMO_NET)
    assert auto_tile_size(300, 200, DEMO_NET, "cpu", budget_bytes=1 << 30) is None  # fits: no tiling
    budget = 12 << 30
    tile = auto_tile_size(3000, 4000, DEMO_NET, "cpu", budget_bytes=budget)
    assert tile is not None and tile % 8 == 0 and MIN_TILE <= tile < 4000
    assert tile * tile * per_px <= budget  # one tile's forward fits
    assert (tile + 8) ** 2 * per_px + 3000 * 4000 * IMAGE_BYTES_PER_PIXEL > budget  # and it is the largest that does
    assert auto_tile_size(3000, 4000, DEMO_NET, "cpu", budget_bytes=1) == MIN_TILE


def test_activation_estimate_grows_with_width():
    small = activation_bytes_per_pixel(ModelConfig(dim=8, heads=(1, 1, 1, 1)))
    paper = activation_bytes_per_pixel(ModelConfig())
    assert 0 < small < paper
    assert memory_budget("cpu") > 0
