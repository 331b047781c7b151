"""Building blocks of TextPromptIR: the Restormer backbone (MDTA, GDFN, LayerNorm,
pixel-(un)shuffle resampling) and the text modulation of TextPromptIR Sec. 3.2.

Every block is called as ``block(x, text)``: the condition is passed explicitly.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = [
    "LayerNorm2d",
    "MDTA",
    "GDFN",
    "TextModulation",
    "TransformerBlock",
    "Downsample",
    "Upsample",
]


class LayerNorm2d(nn.Module):
    """Per-pixel LayerNorm over channels of a (B, C, H, W) map (Restormer Sec. 3).

    ``with_bias=True`` is Restormer's "WithBias" norm; ``False`` is "BiasFree", which
    scales by 1/std without subtracting the mean in the numerator.
    """

    def __init__(self, channels: int, with_bias: bool = True, eps: float = 1e-5) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels)) if with_bias else None
        self.eps = eps
        self.fast = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fast:
            return self._forward_fast(x)
        return self._forward_reference(x)

    def _forward_reference(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        t = x.flatten(2).transpose(1, 2)  # (B, H*W, C)
        var = t.var(-1, keepdim=True, unbiased=False)
        if self.bias is None:
            t = t / torch.sqrt(var + self.eps) * self.weight
        else:
            mu = t.mean(-1, keepdim=True)
            t = (t - mu) / torch.sqrt(var + self.eps) * self.weight + self.bias
        return t.transpose(1, 2).reshape(b, c, h, w)  # back to (B, C, H, W)

    def _forward_fast(self, x: torch.Tensor) -> torch.Tensor:
        if self.bias is None:
            var = x.var(1, keepdim=True, unbiased=False)  # (B, 1, H, W)
            return x * torch.rsqrt(var + self.eps) * self.weight[:, None, None]
        t = x.permute(0, 2, 3, 1)  # (B, H, W, C) view, no copy
        t = F.layer_norm(t, t.shape[-1:], self.weight, self.bias, self.eps)
        return t.permute(0, 3, 1, 2)  # (B, C, H, W) view


class MDTA(nn.Module):
    """Multi-Dconv head Transposed Attention (Restormer Sec. 3.1): attention across
    channels, so its cost is linear in the number of pixels."""

    def __init__(self, dim: int, num_heads: int, bias: bool) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.temperature = nn.Parameter(torch.ones(num_heads, 1, 1))
        self.qkv = nn.Conv2d(dim, dim * 3, 1, bias=bias)
        self.qkv_dwconv = nn.Conv2d(dim * 3, dim * 3, 3, padding=1, groups=dim * 3, bias=bias)
        self.project_out = nn.Conv2d(dim, dim, 1, bias=bias)
        self.fast = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        qkv = self.qkv_dwconv(self.qkv(x))
        q, k, v = qkv.chunk(3, dim=1)
        shape = (b, self.num_heads, c // self.num_heads, h * w)
        q = F.normalize(q.reshape(shape), dim=-1)  # (B, heads, C/heads, H*W)
        k = F.normalize(k.reshape(shape), dim=-1)
        v = v.reshape(shape)
        if self.fast:
            # channels are the tokens; the learnt temperature is folded into q
            out = F.scaled_dot_product_attention(q * self.temperature, k, v, scale=1.0)
        else:
            attn = (q @ k.transpose(-2, -1)) * self.temperature  # (B, heads, C/h, C/h)
            out = attn.softmax(dim=-1) @ v
        return self.project_out(out.reshape(b, c, h, w))  # (B, C, H, W)


class GDFN(nn.Module):
    """Gated-Dconv Feed-forward Network (Restormer Sec. 3.2)."""

    def __init__(self, dim: int, expansion: float, bias: bool) -> None:
        super().__init__()
        hidden = int(dim * expansion)
        self.project_in = nn.Conv2d(dim, hidden * 2, 1, bias=bias)
        self.dwconv = nn.Conv2d(hidden * 2, hidden * 2, 3, padding=1, groups=hidden * 2, bias=bias)
        self.project_out = nn.Conv2d(hidden, dim, 1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1, x2 = self.dwconv(self.project_in(x)).chunk(2, dim=1)
        return self.project_out(F.gelu(x1) * x2)


class TextModulation(nn.Module):
    """Text-guided feature modulation (TextPromptIR Sec. 3.2).

    The projected prompt is multiplied by an ECA channel gate of the normalised image
    features (global average pool -> Conv1d over channels -> sigmoid); two linear
    layers turn the result into a per-channel ``scale`` and ``shift`` and the features
    become ``x * scale + shift``.
    """

    def __init__(self, channels: int, prompt_dim: int, eca_kernel: int = 3) -> None:
        super().__init__()
        self.text_proj = nn.Linear(prompt_dim, channels)
        self.eca = nn.Conv1d(1, 1, eca_kernel, padding=eca_kernel // 2, bias=False)
        self.to_scale = nn.Linear(channels, channels)
        self.to_shift = nn.Linear(channels, channels)

    def forward(self, x: torch.Tensor, prompt: torch.Tensor) -> torch.Tensor:
        pooled = x.mean(dim=(2, 3)).unsqueeze(1)  # (B, 1, C)
        gate = torch.sigmoid(self.eca(pooled)).squeeze(1)  # (B, C)
        cond = self.text_proj(prompt) * gate  # (B, C)
        scale = self.to_scale(cond)[:, :, None, None]  # (B, C, 1, 1)
        shift = self.to_shift(cond)[:, :, None, None]
        return torch.addcmul(shift, x, scale)


class TransformerBlock(nn.Module):
    """Restormer block with the text modulation applied after each LayerNorm,
    before MDTA and before GDFN. ``prompt_dim=None`` builds the plain Restormer block."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        ffn_expansion_factor: float,
        bias: bool,
        with_bias_norm: bool,
        prompt_dim: int | None,
    ) -> None:
        super().__init__()
        self.norm1 = LayerNorm2d(dim, with_bias_norm)
        self.attn = MDTA(dim, num_heads, bias)
        self.norm2 = LayerNorm2d(dim, with_bias_norm)
        self.ffn = GDFN(dim, ffn_expansion_factor, bias)
        self.mod1 = TextModulation(dim, prompt_dim) if prompt_dim else None
        self.mod2 = TextModulation(dim, prompt_dim) if prompt_dim else None

    def forward(self, x: torch.Tensor, prompt: torch.Tensor | None) -> torch.Tensor:
        y = self.norm1(x)
        if self.mod1 is not None:
            y = self.mod1(y, prompt)
        x = x + self.attn(y)
        y = self.norm2(x)
        if self.mod2 is not None:
            y = self.mod2(y, prompt)
        return x + self.ffn(y)


class Downsample(nn.Module):
    """Conv to C/2 channels, then pixel-unshuffle: (B, C, H, W) -> (B, 2C, H/2, W/2)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(dim, dim // 2, 3, padding=1, bias=False), nn.PixelUnshuffle(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class Upsample(nn.Module):
    """Conv to 2C channels, then pixel-shuffle: (B, C, H, W) -> (B, C/2, 2H, 2W)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(dim, dim * 2, 3, padding=1, bias=False), nn.PixelShuffle(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)
