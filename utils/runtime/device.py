"""Where and in which precision the scripts compute: the device, bf16 / fp16 autocast, TF32."""
from __future__ import annotations

import contextlib
import functools
import platform
from pathlib import Path

import torch

from utils.errors import UserError

# --precision: auto picks by device (below); bf16 / fp16 wherever the hardware computes them natively
# (else fp32, and the scripts say so); fp32 everywhere
PRECISION_CHOICES = ("auto", "bf16", "fp16", "fp32")
DEVICE_CHOICES = ("auto", "cpu", "cuda")  # --device; auto: CUDA where present
AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}  # fp32: no autocast

# What --precision auto computes in on a CUDA GPU, by compute capability: the first row the GPU
# reaches. bf16 where the tensor cores compute it (Ampere and newer; the H200 measurements in bf16: see
# the section docs/benchmarks/gpu.md#training-and-inference-on-one-h200), fp16 with a gradient scaler on
# Volta and Turing (V100, T4), which have fp16 but no bf16 tensor cores (PromptIR trained on V100s), fp32 below.
CUDA_AUTO_PRECISION: tuple[tuple[tuple[int, int], str, str], ...] = (
    ((8, 0), "bf16", "computes bf16 natively"),
    ((7, 0), "fp16", "has fp16 but no bf16 tensor cores"),
    ((0, 0), "fp32", "has no tensor cores"),
)
BF16_CAPABILITY = CUDA_AUTO_PRECISION[0][0]


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
    the demo net's training step faster (docs/benchmarks/demo.md#how-the-demo-recipe-was-chosen); elsewhere it
    would be emulated."""
    if platform.system() != "Linux":
        return False
    try:
        flags = next((line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags")), "")
    except OSError:
        return False
    return bool({"avx512_bf16", "amx_bf16"} & set(flags.split()))


def resolve_precision(device: torch.device, precision: str) -> tuple[str, str]:
    """What ``precision`` (one of PRECISION_CHOICES) computes in on ``device``: ``"bf16"``,
    ``"fp16"`` (autocast) or ``"fp32"``, and why, for the scripts' start-up lines."""
    if precision == "fp32":
        return "fp32", "--precision fp32"
    if device.type == "cuda":
        major, minor = torch.cuda.get_device_capability(device)
        gpu = f"compute capability {major}.{minor}"
        if precision == "auto":
            chosen, why = next((p, w) for cap, p, w in CUDA_AUTO_PRECISION if (major, minor) >= cap)
            return chosen, f"auto: {gpu} {why}"
        if precision == "bf16" and (major, minor) < BF16_CAPABILITY:
            return "fp32", f"--precision bf16, but {gpu} has no bf16 tensor cores"
        return precision, f"--precision {precision}"
    if precision == "bf16":
        return ("bf16", "--precision bf16 on a CPU with native bf16") if cpu_has_bf16() else \
            ("fp32", "--precision bf16, but this CPU computes bf16 only emulated")
    if precision == "fp16":
        return "fp32", "--precision fp16 is for CUDA GPUs"
    return "fp32", "auto: fp32 on a CPU"


def autocast_as(device: torch.device, precision: str, cache: bool = True) -> contextlib.AbstractContextManager:
    """Autocast to a resolved ``precision`` (``"bf16"``, ``"fp16"``; ``"fp32"``: a no-op) on ``device``,
    without resolving it again. ``cache=False`` is needed inside CUDA graph capture."""
    if precision not in ("bf16", "fp16", "fp32"):
        raise ValueError(f"{precision!r}: a resolved precision is bf16, fp16 or fp32 (see resolve_precision)")
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=AUTOCAST_DTYPES[precision], cache_enabled=cache)


def autocast(device: torch.device, precision: str, cache: bool = True) -> contextlib.AbstractContextManager:
    """Autocast as ``precision`` (one of PRECISION_CHOICES) means on ``device`` (``resolve_precision``)."""
    return autocast_as(device, resolve_precision(device, precision)[0], cache)


def allow_tf32(device: torch.device) -> None:
    """Let fp32 matrix products and convolutions use TF32 on CUDA (Ampere and newer)."""
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def describe(model: torch.nn.Module, device: torch.device, precision: str) -> str:
    """One line for the scripts' logs: the implementation the network chose and the precision."""
    impl = getattr(model, "impl", "?")
    resolved, why = resolve_precision(device, precision)
    shown = "fp32" if resolved == "fp32" else f"{resolved} autocast"
    return f"implementation {impl} on {device.type} ({shown}; {why})"


def is_out_of_memory(error: BaseException) -> bool:
    """Whether ``error`` is the device (or the CPU allocator) running out of memory."""
    return isinstance(error, torch.OutOfMemoryError) or (
        isinstance(error, RuntimeError) and ("out of memory" in str(error) or "can't allocate memory" in str(error)))
