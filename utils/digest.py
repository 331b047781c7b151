"""SHA-256 of files, read in chunks: how results, encoders and checkpoints are identified."""
from __future__ import annotations

import hashlib
from pathlib import Path

import torch


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of the bytes of ``path``."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def weights_sha256(state: dict) -> str:
    """Hex SHA-256 of a state_dict's tensors as the network computes with them (floating-point
    tensors as float32, in name order): the identity of a network's weights, the same for a
    ``last.pt`` and a release folder exported from it in fp32, whatever the file format."""
    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().cpu()
        t = (t.float() if t.is_floating_point() else t).contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}\n".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()
