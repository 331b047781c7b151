"""Where and in which precision the scripts compute: the device, bf16 autocast, TF32."""
from __future__ import annotations

import contextlib

import torch

from utils.errors import UserError

PRECISION_CHOICES = ("bf16", "fp32")


def pick_device(choice: str = "auto", local_rank: int = 0) -> torch.device:
    """``auto``: CUDA when present, else CPU; ``cuda`` without a GPU is a UserError."""
    if choice == "cuda" or (choice == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise UserError("--device cuda: no CUDA device is visible; use --device cpu")
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def uses_bf16(device: torch.device, precision: str) -> bool:
    """bf16 autocast applies on CUDA only: on a CPU everything runs in fp32."""
    return precision == "bf16" and device.type == "cuda"


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA when ``precision`` is bf16; a no-op otherwise."""
    if uses_bf16(device, precision):
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def allow_tf32(device: torch.device) -> None:
    """Let fp32 matrix products and convolutions use TF32 on CUDA (Ampere and newer)."""
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def describe(model: torch.nn.Module, device: torch.device, precision: str) -> str:
    """One line for the scripts' logs: the implementation the network chose and the precision."""
    impl = getattr(model, "impl", "?")
    prec = "bf16 autocast" if uses_bf16(device, precision) else "fp32"
    return f"implementation {impl} on {device.type} ({prec})"
