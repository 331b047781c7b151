"""Building blocks of TextPromptIR: the Restormer backbone (MDTA, GDFN, LayerNorm,
pixel-(un)shuffle resampling) and the text modulation of TextPromptIR Sec. 3.2.

Every block is called as ``block(x, text)``: the condition is passed explicitly.

Two block classes share the same parameters and compute the same function; the network
picks one at construction (``TextPromptIR(impl=...)``):

* :class:`TransformerBlock`, the *reference*, is the straightforward computation written like
  the official Restormer / TextPromptIR code (LayerNorm by hand over a transposed copy,
  explicit ``softmax(q @ k^T) @ v`` attention, modulation as ``x * scale + shift``);
* :class:`FastTransformerBlock` works on channels-last data seen as pixel tokens
  ``(B, H*W, C)`` (equal up to fp32 rounding; tests/test_fast_path.py): LayerNorm is
  ``F.layer_norm`` over the contiguous channel axis; the text scale/shift is folded into the
  weights of the 1x1 convolution that follows it; attention rescales each head's small d x d
  Gram matrix instead of normalising q and k, and folds the attention matrix into the output
  projection; the GDFN gate and value halves are computed apart so both stay contiguous;
  residual additions ride in the matmul epilogue. What the result runs at on a CPU:
  docs/benchmarks/cpu-speed.md#paper-network-against-the-official-implementation (and, in its
  #cut-from-this-page, where the log of what each step bought lives).

The modules' ``forward`` is the reference computation; their ``*_tokens`` methods are the
same computation on tokens, used by the fast block.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = [
    "LayerNorm2d",
    "MDTA",
    "GDFN",
    "TextModulation",
    "eca_kernel_size",
    "TransformerBlock",
    "FastTransformerBlock",
    "Downsample",
    "Upsample",
]

_NORMALIZE_EPS = 1e-12  # F.normalize's default eps (q and k normalisation in MDTA)


# ------------------------------------------------------------------ fast-path helpers
def _to_tokens(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, H*W, C) pixel tokens; a view when ``x`` is channels-last."""
    b, c, h, w = x.shape
    x = x.contiguous(memory_format=torch.channels_last)
    return x.permute(0, 2, 3, 1).reshape(b, h * w, c)  # (B, H*W, C)


def _from_tokens(t: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """(B, H*W, C) tokens -> (B, C, H, W) view with channels-last strides."""
    b, _, c = t.shape
    return t.reshape(b, h, w, c).permute(0, 3, 1, 2)  # (B, C, H, W)


def _spatial_conv(conv: nn.Conv2d, t: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """A 3x3 (depthwise) convolution on tokens, computed channels-last (oneDNN on CPU)."""
    return _to_tokens(conv(_from_tokens(t, h, w)))


def _token_matmul(t: torch.Tensor, weight: torch.Tensor, add: torch.Tensor | None) -> torch.Tensor:
    """``t @ weight + add`` for tokens ``t`` (B, N, Cin).

    ``weight`` is (Cin, Cout), shared by the batch, or (B, Cin, Cout) per sample; ``add``
    broadcasts to (B, N, Cout) (a bias, a residual or both) and is fused into the GEMM.
    """
    if weight.dim() == 2:
        weight = weight.expand(t.shape[0], -1, -1)  # (B, Cin, Cout), no copy
    if add is None:
        return torch.bmm(t, weight)
    return torch.baddbmm(add, t, weight)  # (B, N, Cout)


def _add(a: torch.Tensor | None, b: torch.Tensor | None) -> torch.Tensor | None:
    """``a + b`` where either may be absent."""
    if a is None:
        return b
    return a if b is None else a + b


# ------------------------------------------------------------------ modules
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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        t = x.flatten(2).transpose(1, 2)  # (B, H*W, C)
        var = t.var(-1, keepdim=True, unbiased=False)
        if self.bias is None:
            t = t / torch.sqrt(var + self.eps) * self.weight
        else:
            mu = t.mean(-1, keepdim=True)
            t = (t - mu) / torch.sqrt(var + self.eps) * self.weight + self.bias
        return t.transpose(1, 2).reshape(b, c, h, w)  # back to (B, C, H, W)

    def forward_tokens(self, t: torch.Tensor) -> torch.Tensor:
        """The same norm on pixel tokens (B, N, C), normalising the contiguous last axis."""
        if self.bias is not None:
            return F.layer_norm(t, t.shape[-1:], self.weight, self.bias, self.eps)
        # (B, N, 1); two passes via mean() are faster than Tensor.var over the last axis, as measured in the
        # log that the section docs/benchmarks/cpu-speed.md#cut-from-this-page names
        var = (t - t.mean(-1, keepdim=True)).square().mean(-1, keepdim=True)
        return t * torch.rsqrt(var + self.eps) * self.weight


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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        qkv = self.qkv_dwconv(self.qkv(x))
        q, k, v = qkv.chunk(3, dim=1)
        shape = (b, self.num_heads, c // self.num_heads, h * w)
        q = F.normalize(q.reshape(shape), dim=-1)  # (B, heads, C/heads, H*W)
        k = F.normalize(k.reshape(shape), dim=-1)
        v = v.reshape(shape)
        attn = (q @ k.transpose(-2, -1)) * self.temperature  # (B, heads, C/h, C/h)
        out = attn.softmax(dim=-1) @ v
        return self.project_out(out.reshape(b, c, h, w))  # (B, C, H, W)

    def attend_tokens(self, qkv: torch.Tensor, residual: torch.Tensor | None) -> torch.Tensor:
        """Attention + output projection on tokens: ``qkv`` (B, N, 3C) after the
        depthwise conv -> (B, N, C), plus ``residual`` when given.

        With q^ = q/|q| and k^ = k/|k| (norms over pixels), q^ k^T = (q k^T) / (|q| |k|^T),
        so only each head's small d x d Gram matrix is rescaled, never q or k. And
        ``project_out(attn @ v)`` is ``v @ (P blockdiag(attn))^T`` in token layout: a single
        GEMM of the pixels with a C x C matrix replaces attn @ v and the projection.
        """
        c = qkv.shape[-1] // 3
        q, k, v = qkv.split(c, dim=-1)  # (B, N, C) strided views; one split -> one cat in backward
        # (B, C) norms over pixels; square-sum-sqrt is faster than linalg.vector_norm here (same log)
        nq = q.square().sum(dim=1).sqrt().clamp_min(_NORMALIZE_EPS)
        nk = k.square().sum(dim=1).sqrt().clamp_min(_NORMALIZE_EPS)
        proj_t = self.project_out.weight.reshape(c, c).t()  # (C, Cout): P^T
        d = c // self.num_heads
        rows = []
        for i in range(self.num_heads):
            sl = slice(i * d, (i + 1) * d)
            gram = q[..., sl].transpose(1, 2) @ k[..., sl]  # (B, d, d)
            logits = gram / (nq[:, sl, None] * nk[:, None, sl]) * self.temperature[i]
            rows.append(logits.softmax(dim=-1).transpose(1, 2) @ proj_t[sl])  # (B, d, Cout)
        mix = torch.cat(rows, dim=1) if len(rows) > 1 else rows[0]  # (B, C, Cout)
        return _token_matmul(v, mix, _add(residual, self.project_out.bias))


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

    def forward_tokens(self, y: torch.Tensor, w_in: torch.Tensor, b_in: torch.Tensor | None,
                       residual: torch.Tensor | None, hw: tuple[int, int]) -> torch.Tensor:
        """GDFN on tokens ``y`` (B, N, C) with the (possibly folded) input projection
        ``w_in`` (C, 2*hidden) or (B, C, 2*hidden) and bias ``b_in``; adds ``residual``.

        The gate and value halves are computed by separate GEMMs and depthwise convs (the
        depthwise conv is per channel, so this is exact) so that each half is contiguous:
        GELU on a strided half-view is several times slower than on contiguous data.
        """
        hidden = self.project_out.in_channels

        def half(i: int) -> torch.Tensor:  # (B, N, hidden): 1x1 conv + depthwise conv of one half
            sl = slice(i * hidden, (i + 1) * hidden)
            u = _token_matmul(y, w_in[..., sl], None if b_in is None else b_in[..., sl])
            dw_b = None if self.dwconv.bias is None else self.dwconv.bias[sl]
            img = F.conv2d(_from_tokens(u, *hw), self.dwconv.weight[sl], dw_b, padding=1, groups=hidden)
            return _to_tokens(img)

        if torch.is_grad_enabled():
            g = F.gelu(half(0)) * half(1)  # (B, N, hidden)
        else:  # no autograd: gate in place, so inference holds no more than the reference path
            g = torch.ops.aten.gelu_(half(0)).mul_(half(1))
        w_out = self.project_out.weight.reshape(-1, hidden).t()  # (hidden, C)
        return _token_matmul(g, w_out, _add(residual, self.project_out.bias))


def eca_kernel_size(channels: int, gamma: int = 2, b: int = 1) -> int:
    """ECA-Net's adaptive kernel size, the odd number nearest above ``(log2(C) + b) / gamma``
    (3 for 48 and 96 channels, 5 for 192 and 384), as in the official TextPromptIR code."""
    t = int(abs((math.log2(channels) + b) / gamma))
    return t if t % 2 else t + 1


class TextModulation(nn.Module):
    """Text-guided feature modulation (TextPromptIR Sec. 3.2).

    The projected prompt is multiplied by an ECA channel gate of the normalised image
    features (global average pool -> Conv1d over channels -> sigmoid); two linear
    layers turn the result into a per-channel ``scale`` and ``shift`` and the features
    become ``x * scale + shift``.
    """

    def __init__(self, channels: int, prompt_dim: int) -> None:
        super().__init__()
        eca_kernel = eca_kernel_size(channels)
        self.text_proj = nn.Linear(prompt_dim, channels)
        self.eca = nn.Conv1d(1, 1, eca_kernel, padding=eca_kernel // 2, bias=False)
        self.to_scale = nn.Linear(channels, channels)
        self.to_shift = nn.Linear(channels, channels)

    def forward(self, x: torch.Tensor, prompt: torch.Tensor) -> torch.Tensor:
        scale, shift = self.scale_shift(x.mean(dim=(2, 3)), prompt)
        return torch.addcmul(shift[:, :, None, None], x, scale[:, :, None, None])

    def scale_shift(self, pooled: torch.Tensor, prompt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-channel ``(scale, shift)``, each (B, C), from the pooled features (B, C)."""
        gate = torch.sigmoid(self.eca(pooled.unsqueeze(1))).squeeze(1)  # (B, 1, C) -> (B, C)
        cond = self.text_proj(prompt) * gate  # (B, C)
        return self.to_scale(cond), self.to_shift(cond)


class TransformerBlock(nn.Module):
    """Restormer block with the text modulation applied after each LayerNorm, before MDTA and
    before GDFN (Sec. 3.2), computed the reference way. ``prompt_dim=None`` builds the plain
    Restormer block."""

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


class FastTransformerBlock(TransformerBlock):
    """The same block (same parameters, same function) computed on channels-last pixel tokens,
    with the text modulation folded into the 1x1 convolutions that follow it (module docstring)."""

    def forward(self, x: torch.Tensor, prompt: torch.Tensor | None) -> torch.Tensor:
        h, w = x.shape[-2:]
        t = _to_tokens(x)  # (B, N, C)
        y = self.norm1.forward_tokens(t)
        weight, bias = _fold_modulation(self.mod1, y, prompt, self.attn.qkv)
        qkv = _spatial_conv(self.attn.qkv_dwconv, _token_matmul(y, weight, bias), h, w)  # (B, N, 3C)
        t = self.attn.attend_tokens(qkv, residual=t)
        y = self.norm2.forward_tokens(t)
        weight, bias = _fold_modulation(self.mod2, y, prompt, self.ffn.project_in)
        return _from_tokens(self.ffn.forward_tokens(y, weight, bias, residual=t, hw=(h, w)), h, w)


def _fold_modulation(mod: TextModulation | None, y: torch.Tensor, prompt: torch.Tensor | None,
                     conv: nn.Conv2d) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Fold the text modulation of the normed tokens ``y`` (B, N, C) into the 1x1 ``conv``
    that follows it: ``conv(y * s + t) = y @ (s[:, None] * W^T) + (t @ W^T + b)``.

    Returns the weight, (C, Cout) or per sample (B, C, Cout), and the bias to add,
    (B, 1, Cout), (Cout,) or None.
    """
    w_t = conv.weight.reshape(conv.out_channels, -1).t()  # (C, Cout)
    if mod is None:
        return w_t, conv.bias
    scale, shift = mod.scale_shift(y.mean(dim=1), prompt)  # (B, C) each; pooled over pixels
    bias = _add(shift @ w_t, conv.bias)  # (B, Cout)
    return scale[:, :, None] * w_t, bias[:, None, :]  # (B, C, Cout), (B, 1, Cout)


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
