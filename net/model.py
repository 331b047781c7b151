"""TextPromptIR: a Restormer U-Net whose every block is modulated by an instruction
embedding (TextPromptIR, arXiv 2312.06162, Sec. 3)."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file

from net.blocks import Downsample, FastTransformerBlock, TransformerBlock, Upsample

TEXT_COND_CHOICES = ("film", "none")
LAYERNORM_CHOICES = ("WithBias", "BiasFree")
IMPL_CHOICES = ("auto", "fast", "reference")
Impl = Literal["auto", "fast", "reference"]
# The text MLP maps the encoder's embedding (text_dim wide: 768 for BERT-base, 384 for MiniLM)
# through 576 to the prompt every block reads (Sec. 3.2). PROMPT_DIM is the paper's fixed prompt
# width, whatever the encoder: MiniLM's 384 is text_dim, a different number that happens to be equal.
PROMPT_HIDDEN = 576
PROMPT_DIM = 384
PAD_MULTIPLE = 8  # three 2x down-samplings
# A release folder (``python -m utils.release export``): the network's settings and its weights.
RELEASE_FORMAT = "textpromptir-release/1"
RELEASE_CONFIG = "config.json"
RELEASE_WEIGHTS = "model.safetensors"


@dataclass(frozen=True)
class ModelConfig:
    """Everything that defines the network's shape; the defaults are the paper's (Sec. 4.1).

    ``text_cond="none"`` builds the plain Restormer (the ablation baseline), which has no text
    parameters. Checkpoints store ``to_dict()``; ``from_dict`` reads it back.
    """

    text_dim: int = 768  # BERT-base; the packaged MiniLM encoder gives 384
    dim: int = 48
    num_blocks: tuple[int, int, int, int] = (4, 6, 6, 8)
    num_refinement_blocks: int = 4
    heads: tuple[int, int, int, int] = (1, 2, 4, 8)
    ffn_expansion_factor: float = 2.66
    bias: bool = False
    layernorm_type: str = "WithBias"
    text_cond: str = "film"

    def __post_init__(self) -> None:
        object.__setattr__(self, "num_blocks", tuple(int(n) for n in self.num_blocks))
        object.__setattr__(self, "heads", tuple(int(h) for h in self.heads))
        if self.text_cond not in TEXT_COND_CHOICES:
            raise ValueError(f"text_cond must be one of {TEXT_COND_CHOICES}, got {self.text_cond!r}")
        if self.layernorm_type not in LAYERNORM_CHOICES:
            raise ValueError(f"layernorm_type must be one of {LAYERNORM_CHOICES}, got {self.layernorm_type!r}")
        if len(self.num_blocks) != 4 or len(self.heads) != 4:
            raise ValueError(f"num_blocks and heads need 4 values (one per level), got "
                             f"{list(self.num_blocks)} and {list(self.heads)}")
        if self.dim < 2 or self.dim % 2:
            raise ValueError(f"dim={self.dim} must be even (each down-sampling halves the channels, then "
                             "stacks 2x2 pixels)")
        if int(self.dim * self.ffn_expansion_factor) < 1:
            raise ValueError(f"ffn_expansion_factor={self.ffn_expansion_factor:g} gives the {self.dim}-channel "
                             "level no hidden channel")
        for level, heads in enumerate(self.heads):
            if heads < 1 or (self.dim << level) % heads:
                raise ValueError(f"heads[{level}]={heads} does not divide the {self.dim << level} channels of level {level + 1}")

    def to_dict(self) -> dict[str, Any]:
        """A plain dict (lists, not tuples) for checkpoints and YAML."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "ModelConfig":
        """Inverse of ``to_dict``; also reads the ``model_args`` of checkpoints written before
        this class existed (same keys). Unknown keys are a ValueError."""
        unknown = set(values) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown model settings {sorted(unknown)}")
        return cls(**values)


def resolve_impl(impl: str, device: torch.device | str) -> str:
    """The computation to use on ``device``: ``auto`` is the CPU-tuned fast path on CPU and the
    reference path elsewhere, the faster one on an H100 (docs/benchmarks/gpu.md#before-the-gpu-work-one-h100)."""
    if impl not in IMPL_CHOICES:
        raise ValueError(f"impl must be one of {IMPL_CHOICES}, got {impl!r}")
    if impl != "auto":
        return impl
    return "fast" if torch.device(device).type == "cpu" else "reference"


def pad_to_multiple(img: torch.Tensor, multiple: int = PAD_MULTIPLE) -> torch.Tensor:
    """Pad the bottom/right of (B, C, H, W) to multiples of ``multiple``: reflect, or replicate
    where a side is too short to reflect."""
    h, w = img.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if not (ph or pw):
        return img
    mode = "reflect" if ph < h and pw < w else "replicate"
    return F.pad(img, (0, pw, 0, ph), mode=mode)


class BlockStack(nn.Module):
    """A sequence of transformer blocks that all receive the same prompt."""

    def __init__(self, n: int, block: type[TransformerBlock], dim: int, heads: int, config: ModelConfig,
                 prompt_dim: int | None) -> None:
        super().__init__()
        with_bias_norm = config.layernorm_type == "WithBias"
        self.blocks = nn.ModuleList(
            block(dim, heads, config.ffn_expansion_factor, config.bias, with_bias_norm, prompt_dim)
            for _ in range(n)
        )

    def forward(self, x: torch.Tensor, prompt: torch.Tensor | None) -> torch.Tensor:
        for block in self.blocks:
            x = block(x, prompt)
        return x


class TextPromptIR(nn.Module):
    """Text-guided all-in-one restoration network.

    ``forward(img (B,3,H,W) in [0,1], embedding (B,text_dim)) -> (B,3,H,W)`` for any H, W: the input
    is padded to a multiple of 8 and the output cropped back.

    ``impl`` chooses, once, how the blocks compute (the parameters and the function are the
    same): ``fast`` (channels-last tokens, tuned for CPUs), ``reference`` (written like the
    official code), or ``auto`` for the faster one on ``device`` (see :func:`resolve_impl`).
    The network is built on ``device``.
    """

    def __init__(self, config: ModelConfig = ModelConfig(), impl: Impl = "auto",
                 device: torch.device | str = "cpu") -> None:
        super().__init__()
        self.config = config
        self.impl = resolve_impl(impl, device)
        block = FastTransformerBlock if self.impl == "fast" else TransformerBlock
        dim = config.dim
        prompt_dim = PROMPT_DIM if config.text_cond == "film" else None
        self.text_mlp = None
        if prompt_dim is not None:
            self.text_mlp = nn.Sequential(
                nn.Linear(config.text_dim, PROMPT_HIDDEN), nn.LeakyReLU(0.2),
                nn.Linear(PROMPT_HIDDEN, PROMPT_DIM), nn.LeakyReLU(0.2),
            )

        def stack(n: int, width: int, heads: int) -> BlockStack:
            return BlockStack(n, block, width, heads, config, prompt_dim)

        n1, n2, n3, n4 = config.num_blocks
        h1, h2, h3, h4 = config.heads
        self.patch_embed = nn.Conv2d(3, dim, 3, padding=1, bias=config.bias)
        self.encoder1 = stack(n1, dim, h1)
        self.down1_2 = Downsample(dim)
        self.encoder2 = stack(n2, dim * 2, h2)
        self.down2_3 = Downsample(dim * 2)
        self.encoder3 = stack(n3, dim * 4, h3)
        self.down3_4 = Downsample(dim * 4)
        self.latent = stack(n4, dim * 8, h4)
        self.up4_3 = Upsample(dim * 8)
        self.reduce3 = nn.Conv2d(dim * 8, dim * 4, 1, bias=config.bias)
        self.decoder3 = stack(n3, dim * 4, h3)
        self.up3_2 = Upsample(dim * 4)
        self.reduce2 = nn.Conv2d(dim * 4, dim * 2, 1, bias=config.bias)
        self.decoder2 = stack(n2, dim * 2, h2)
        self.up2_1 = Upsample(dim * 2)
        # level 1 of the decoder and the refinement run at 2*dim, as in Restormer
        self.decoder1 = stack(n1, dim * 2, h1)
        self.refinement = stack(config.num_refinement_blocks, dim * 2, h1)
        self.output = nn.Conv2d(dim * 2, 3, 3, padding=1, bias=config.bias)
        self.to(device)

    @classmethod
    def from_pretrained(cls, source: str | Path, impl: Impl = "auto",
                        device: torch.device | str = "cpu") -> "TextPromptIR":
        """The network of a release folder (``config.json`` + ``model.safetensors``), or of a Hugging
        Face Hub id holding one, in eval mode and float32. Safetensors holds tensors only, so
        loading runs no code from the folder. A config of another project is a ValueError; weights
        that do not fit the config are a RuntimeError naming the tensors."""
        folder = Path(source)
        if not folder.is_dir():
            from huggingface_hub import snapshot_download  # only a Hub id needs it: deferred

            folder = Path(snapshot_download(str(source), allow_patterns=[RELEASE_CONFIG, RELEASE_WEIGHTS]))
        settings = json.loads((folder / RELEASE_CONFIG).read_text(encoding="utf-8"))
        if not isinstance(settings, dict) or settings.get("format") != RELEASE_FORMAT:
            raise ValueError(f"{folder / RELEASE_CONFIG}: not a TextPromptIR release ({RELEASE_FORMAT})")
        model = cls(ModelConfig.from_dict(settings["model"]), impl=impl, device=device)
        state = {k: v.float() if v.is_floating_point() else v for k, v in load_file(folder / RELEASE_WEIGHTS).items()}
        model.load_state_dict(state)
        return model.eval()

    def transformer_blocks(self) -> list[TransformerBlock]:
        """Every transformer block, in forward order (the unit that regional compilation wraps)."""
        return [m for m in self.modules() if isinstance(m, TransformerBlock)]

    def forward(self, img: torch.Tensor, embedding: torch.Tensor | None = None) -> torch.Tensor:
        prompt = None
        if self.text_mlp is not None:
            if embedding is None:
                raise ValueError("this TextPromptIR is text-conditioned: pass an instruction embedding")
            prompt = self.text_mlp(embedding.to(img.dtype))  # (B, PROMPT_DIM)
        h, w = img.shape[-2:]
        x = pad_to_multiple(img)

        e1 = self.encoder1(self.patch_embed(x), prompt)
        e2 = self.encoder2(self.down1_2(e1), prompt)
        e3 = self.encoder3(self.down2_3(e2), prompt)
        lat = self.latent(self.down3_4(e3), prompt)
        d3 = self.decoder3(self.reduce3(torch.cat([self.up4_3(lat), e3], 1)), prompt)
        d2 = self.decoder2(self.reduce2(torch.cat([self.up3_2(d3), e2], 1)), prompt)
        d1 = self.decoder1(torch.cat([self.up2_1(d2), e1], 1), prompt)
        out = self.output(self.refinement(d1, prompt)) + x
        return out[..., :h, :w]


def build_model(config: ModelConfig | dict[str, Any], impl: Impl = "auto",
                device: torch.device | str = "cpu") -> TextPromptIR:
    """The network of a config (or of the dict a checkpoint stores) on ``device``."""
    if isinstance(config, dict):
        config = ModelConfig.from_dict(config)
    return TextPromptIR(config, impl=impl, device=device)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def first_mismatch(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> str | None:
    """A description of the first tensor where ``state`` does not fit ``model``, or None."""
    own = model.state_dict()
    for name, t in own.items():
        if name not in state:
            return f"{name} is missing from the checkpoint"
        if tuple(state[name].shape) != tuple(t.shape):
            return f"{name}: checkpoint {tuple(state[name].shape)} vs network {tuple(t.shape)}"
    extra = [k for k in state if k not in own]
    return f"{extra[0]} is in the checkpoint but not in the network" if extra else None
