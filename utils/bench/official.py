"""The official TextPromptIR implementation, loaded from a user's clone of
github.com/MoTong-AI-studio/TextPromptIR, for side-by-side checks (``bench.py --official``).

Nothing of it ships with this project: ``load_official_model`` imports ``net/model.py`` of
the given folder under a private module name, and ``copy_weights_to_official`` copies a
:class:`net.model.TextPromptIR` into it, so that both compute the same function and their
speed and outputs can be compared on the same machine.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
import torch.nn as nn

from utils.errors import UserError

OFFICIAL_TEXT_DIM = 768  # the official network's first text layer is Linear(768, 576)
OFFICIAL_URL = "github.com/MoTong-AI-studio/TextPromptIR"

# our stack -> (official nn.Sequential, the official linear-layer number it uses); the
# official blocks own text layers for every width and pick them with this number
_STACKS = {
    "encoder1": ("encoder_level1", 1), "encoder2": ("encoder_level2", 2),
    "encoder3": ("encoder_level3", 3), "latent": ("latent", 7),
    "decoder3": ("decoder_level3", 3), "decoder2": ("decoder_level2", 2),
    "decoder1": ("decoder_level1", 2), "refinement": ("refinement", 2),
}
_RENAMED = {
    "patch_embed.weight": "patch_embed.proj.weight",
    "reduce3.weight": "reduce_chan_level3.weight", "reduce2.weight": "reduce_chan_level2.weight",
    "text_mlp.0.weight": "linear1.weight", "text_mlp.0.bias": "linear1.bias",
    "text_mlp.2.weight": "linear2.weight", "text_mlp.2.bias": "linear2.bias",
}


def check_official_repo(repo: str | Path) -> Path:
    """The official ``net/model.py`` in ``repo``; a one-line error if it or einops is missing."""
    path = Path(repo) / "net" / "model.py"
    if not path.is_file():
        raise UserError(f"{path}: not found; --official takes a clone of {OFFICIAL_URL}")
    try:
        import einops  # noqa: F401  (the official code imports it)
    except ImportError:
        raise UserError("the official TextPromptIR code needs einops: pip install einops") from None
    return path


def load_official_model(repo: str | Path) -> nn.Module:
    """Build the official ``TextPromptIR()`` (paper configuration) from a clone at ``repo``."""
    path = check_official_repo(repo)
    spec = importlib.util.spec_from_file_location("textpromptir_official_model", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not hasattr(module, "TextPromptIR"):
        raise UserError(f"{path}: defines no TextPromptIR class; is this a clone of {OFFICIAL_URL}?")
    return module.TextPromptIR()


def _official_name(name: str) -> str:
    """Our parameter name -> the official one (e.g. ``encoder1.blocks.0.mod1.eca.weight``
    -> ``encoder_level1.0.attn.fusion.conv.weight``)."""
    if name in _RENAMED:
        return _RENAMED[name]
    stack, rest = name.split(".", 1)
    if stack not in _STACKS:
        return name  # down1_2.body.0.weight, up4_3..., output.weight: same names
    official_stack, n = _STACKS[stack]
    _, index, rest = rest.split(".", 2)  # "blocks.<i>.<rest>"
    rest = rest.replace("norm1.", "norm1.body.").replace("norm2.", "norm2.body.")
    for mod, owner in (("mod1.", "attn."), ("mod2.", "ffn.")):
        if rest.startswith(mod):
            leaf = rest[len(mod):]
            leaf = (leaf.replace("text_proj.", f"linear{n}.").replace("eca.", "fusion.conv.")
                    .replace("to_scale.", f"linear{n}_1.").replace("to_shift.", f"linear{n}_2."))
            rest = owner + leaf
    return f"{official_stack}.{index}.{rest}"


def copy_weights_to_official(ours: nn.Module, official: nn.Module) -> None:
    """Copy every parameter of our paper-configuration TextPromptIR (``text_dim=768``)
    into the official network; the official layers our network lacks keep their values
    (they are never used in its forward).

    The official ``decoder_level3`` runs with ``heads[1]`` (2) heads where Restormer and
    this project use ``heads[2]`` (4); its attention modules are switched to our head
    count so that both networks compute the same function.
    """
    heads = ours.decoder3.blocks[0].attn.num_heads
    for block in official.decoder_level3:
        block.attn.num_heads = heads
        block.attn.temperature = nn.Parameter(torch.ones(heads, 1, 1))
    theirs = official.state_dict()
    with torch.no_grad():
        for name, value in ours.state_dict().items():
            target = _official_name(name)
            if target not in theirs or theirs[target].shape != value.shape:
                raise UserError(f"cannot map {name} to the official {target}: "
                                "the network must be the paper configuration with text_dim 768")
            theirs[target].copy_(value)
