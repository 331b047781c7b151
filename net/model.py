"""TextPromptIR: a Restormer U-Net whose every block is modulated by an instruction
embedding (TextPromptIR, arXiv 2312.06162, Sec. 3)."""
from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from net.blocks import Downsample, TransformerBlock, Upsample

TEXT_COND_CHOICES = ("film", "none")
IMPL_CHOICES = ("fast", "reference")
PROMPT_HIDDEN = 576  # text MLP: text_dim -> 576 -> 384 (Sec. 3.2)
PROMPT_DIM = 384


class BlockStack(nn.Module):
    """A sequence of TransformerBlocks that all receive the same prompt."""

    def __init__(self, n: int, dim: int, heads: int, ffn: float, bias: bool, with_bias_norm: bool,
                 prompt_dim: int | None) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            TransformerBlock(dim, heads, ffn, bias, with_bias_norm, prompt_dim) for _ in range(n)
        )

    def forward(self, x: torch.Tensor, prompt: torch.Tensor | None) -> torch.Tensor:
        for block in self.blocks:
            x = block(x, prompt)
        return x


class TextPromptIR(nn.Module):
    """Text-guided all-in-one restoration network.

    ``forward(img (B,3,H,W) in [0,1], text (B,text_dim)) -> (B,3,H,W)`` for any H, W:
    the input is reflect-padded to a multiple of 8 and the output cropped back.
    ``text_cond="none"`` builds the plain Restormer (ablation baseline), which has no
    text parameters and ignores ``text``. ``impl`` picks the fast or the straightforward
    reference computation; both have the same parameters and the same outputs.
    """

    def __init__(
        self,
        text_dim: int = 768,
        dim: int = 48,
        num_blocks: Sequence[int] = (4, 6, 6, 8),
        num_refinement_blocks: int = 4,
        heads: Sequence[int] = (1, 2, 4, 8),
        ffn_expansion_factor: float = 2.66,
        bias: bool = False,
        layernorm_type: str = "WithBias",
        text_cond: str = "film",
        impl: str = "fast",
    ) -> None:
        super().__init__()
        if text_cond not in TEXT_COND_CHOICES:
            raise ValueError(f"text_cond must be one of {TEXT_COND_CHOICES}, got {text_cond!r}")
        if layernorm_type not in ("WithBias", "BiasFree"):
            raise ValueError(f"layernorm_type must be 'WithBias' or 'BiasFree', got {layernorm_type!r}")
        self.model_args: dict[str, Any] = dict(
            text_dim=text_dim, dim=dim, num_blocks=list(num_blocks),
            num_refinement_blocks=num_refinement_blocks, heads=list(heads),
            ffn_expansion_factor=ffn_expansion_factor, bias=bias,
            layernorm_type=layernorm_type, text_cond=text_cond,
        )
        self.text_cond = text_cond
        wb = layernorm_type == "WithBias"
        pd = PROMPT_DIM if text_cond == "film" else None

        if pd is not None:
            self.text_mlp = nn.Sequential(
                nn.Linear(text_dim, PROMPT_HIDDEN), nn.LeakyReLU(0.2),
                nn.Linear(PROMPT_HIDDEN, PROMPT_DIM), nn.LeakyReLU(0.2),
            )
        else:
            self.text_mlp = None

        def stack(n: int, d: int, h: int) -> BlockStack:
            return BlockStack(n, d, h, ffn_expansion_factor, bias, wb, pd)

        self.patch_embed = nn.Conv2d(3, dim, 3, padding=1, bias=bias)
        self.encoder1 = stack(num_blocks[0], dim, heads[0])
        self.down1_2 = Downsample(dim)
        self.encoder2 = stack(num_blocks[1], dim * 2, heads[1])
        self.down2_3 = Downsample(dim * 2)
        self.encoder3 = stack(num_blocks[2], dim * 4, heads[2])
        self.down3_4 = Downsample(dim * 4)
        self.latent = stack(num_blocks[3], dim * 8, heads[3])
        self.up4_3 = Upsample(dim * 8)
        self.reduce3 = nn.Conv2d(dim * 8, dim * 4, 1, bias=bias)
        self.decoder3 = stack(num_blocks[2], dim * 4, heads[2])
        self.up3_2 = Upsample(dim * 4)
        self.reduce2 = nn.Conv2d(dim * 4, dim * 2, 1, bias=bias)
        self.decoder2 = stack(num_blocks[1], dim * 2, heads[1])
        self.up2_1 = Upsample(dim * 2)
        # level 1 of the decoder and the refinement run at 2*dim, as in Restormer
        self.decoder1 = stack(num_blocks[0], dim * 2, heads[0])
        self.refinement = stack(num_refinement_blocks, dim * 2, heads[0])
        self.output = nn.Conv2d(dim * 2, 3, 3, padding=1, bias=bias)
        self.set_impl(impl)

    def set_impl(self, impl: str) -> "TextPromptIR":
        """Switch every block between the fast and the reference computation."""
        if impl not in IMPL_CHOICES:
            raise ValueError(f"impl must be one of {IMPL_CHOICES}, got {impl!r}")
        for m in self.modules():
            if hasattr(m, "fast"):
                m.fast = impl == "fast"
        self.impl = impl
        return self

    def forward(self, img: torch.Tensor, text: torch.Tensor | None = None) -> torch.Tensor:
        prompt = None
        if self.text_mlp is not None:
            if text is None:
                raise ValueError("this TextPromptIR is text-conditioned: pass an instruction embedding")
            prompt = self.text_mlp(text.to(img.dtype))
        h, w = img.shape[-2:]
        ph, pw = (-h) % 8, (-w) % 8
        x = img
        if ph or pw:
            mode = "reflect" if ph < h and pw < w else "replicate"
            x = F.pad(img, (0, pw, 0, ph), mode=mode)

        e1 = self.encoder1(self.patch_embed(x), prompt)
        e2 = self.encoder2(self.down1_2(e1), prompt)
        e3 = self.encoder3(self.down2_3(e2), prompt)
        lat = self.latent(self.down3_4(e3), prompt)
        d3 = self.decoder3(self.reduce3(torch.cat([self.up4_3(lat), e3], 1)), prompt)
        d2 = self.decoder2(self.reduce2(torch.cat([self.up3_2(d3), e2], 1)), prompt)
        d1 = self.decoder1(torch.cat([self.up2_1(d2), e1], 1), prompt)
        out = self.output(self.refinement(d1, prompt)) + x
        return out[..., :h, :w]


def build_model(model_args: dict[str, Any], impl: str = "fast") -> TextPromptIR:
    """Rebuild a TextPromptIR from the ``model_args`` stored in a checkpoint."""
    return TextPromptIR(**model_args, impl=impl)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
