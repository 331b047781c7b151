"""A checkpoint's network made ready to run: the device picked, eval mode, one line saying how it
runs, and its transformer blocks compiled on request (the checkpoint's dict I/O is utils/checkpoint.py)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from net.model import TextPromptIR
from utils.checkpoint import load_model
from utils.runtime.compile import compile_blocks, default_compile_cache, use_compile_cache
from utils.runtime.device import describe, pick_device


def load_for_inference(path: str | Path, device_choice: str = "auto", impl: str = "auto", precision: str = "auto",
                       compile_blocks_too: bool = False, compile_cache: str | Path | None = None,
                       ) -> tuple[TextPromptIR, dict[str, Any], torch.device]:
    """The network of a checkpoint in eval mode on the chosen device (and its checkpoint and
    device), with one line saying which implementation and precision it runs in. Compiled blocks
    (``compile_blocks_too``) keep their cache in ``compile_cache`` (default: beside the checkpoint or
    release folder; ``ckpt/`` for a Hub id)."""
    device = pick_device(device_choice)
    model, ckpt = load_model(path, device=device, impl=impl)
    model.eval()
    print(f"{path}: {describe(model, device, precision)}")
    if compile_blocks_too:
        beside = Path(path).parent if Path(path).exists() else Path("ckpt")  # a Hub id: the default ckpt folder
        cache = use_compile_cache(compile_cache or default_compile_cache(beside), "--compile_cache")
        compile_blocks(model)
        print(f"torch.compile: {len(model.transformer_blocks())} transformer blocks, compiled for each new image "
              f"size; cache {cache}")
    return model, ckpt, device
