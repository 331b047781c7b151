"""Where and in which precision the scripts compute: the device, bf16 autocast, TF32."""
from __future__ import annotations

import contextlib
import functools
import platform
from pathlib import Path

import torch

from utils.errors import UserError

# auto: bf16 on a GPU, fp32 on a CPU; bf16: bf16 wherever the hardware computes it natively (a GPU,
# or a CPU with AVX512-BF16 / AMX); fp32: fp32 everywhere
PRECISION_CHOICES = ("auto", "bf16", "fp32")


def pick_device(choice: str = "auto", local_rank: int = 0) -> torch.device:
    """``auto``: CUDA when present, else CPU; ``cuda`` without a GPU is a UserError."""
    if choice == "cuda" or (choice == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise UserError("--device cuda: no CUDA device is visible; use --device cpu")
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


@functools.cache
def cpu_has_bf16() -> bool:
    """True when this CPU multiplies bf16 natively (AVX512-BF16 or AMX): there bf16 autocast makes
    the demo net's training step 1.45x faster (BENCHMARKS.md); elsewhere it would be emulated."""
    if platform.system() != "Linux":
        return False
    try:
        flags = next((line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags")), "")
    except OSError:
        return False
    return bool({"avx512_bf16", "amx_bf16"} & set(flags.split()))


def uses_bf16(device: torch.device, precision: str) -> bool:
    """Whether ``precision`` means bf16 autocast on ``device`` (see PRECISION_CHOICES)."""
    if precision == "fp32":
        return False
    if device.type == "cuda":
        return True
    return precision == "bf16" and cpu_has_bf16()


def autocast(device: torch.device, precision: str, cache: bool = True) -> contextlib.AbstractContextManager:
    """bf16 autocast where ``precision`` asks for it on this device (``uses_bf16``); a no-op otherwise.
    ``cache=False`` is needed inside CUDA graph capture."""
    if uses_bf16(device, precision):
        return torch.autocast(device.type, dtype=torch.bfloat16, cache_enabled=cache)
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
