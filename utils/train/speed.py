"""How a training run is made fast on its device, decided in one place (``speed_settings``) and said
in one start-up line: compiled transformer blocks, the CUDA-graphed step, the autocast precision,
DDP, and the global batch.

On CUDA the fastest configuration measured (compiled blocks plus the CUDA-graphed step:
docs/benchmarks/gpu.md#training-and-inference-on-one-h200) is the default; ``--eager`` opts out. On a CPU
nothing is turned on by default; ``--compile`` still compiles there.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch

from utils.runtime.device import resolve_precision


@dataclass(frozen=True)
class SpeedSettings:
    """What a run uses, and why (``speed_settings``)."""

    compile: bool
    cuda_graph: bool
    precision: str  # resolved: "bf16", "fp16" or "fp32" (utils.runtime.device.resolve_precision)
    world_size: int
    why: dict[str, str]  # "compile", "cuda_graph", "precision" -> the reason, for the start-up line
    notes: tuple[str, ...] = ()  # explicit requests that could not be met, one line each

    @property
    def ddp(self) -> bool:
        return self.world_size > 1

    def parts(self) -> list[str]:
        """What is in use and why, one phrase each."""
        return [f"DDP over {self.world_size} processes" if self.ddp else "1 process",
                ("compiled blocks" if self.compile else "eager blocks") + f" ({self.why['compile']})",
                ("CUDA-graphed step" if self.cuda_graph else "step not graphed") + f" ({self.why['cuda_graph']})",
                ("fp32" if self.precision == "fp32" else f"{self.precision} autocast")
                + (" with a gradient scaler" if self.precision == "fp16" else "") + f" ({self.why['precision']})"]

    def line(self, batch_size: int, device: torch.device) -> str:
        """The start-up line: what is in use and why, and the global batch."""
        unit = "GPU" if device.type == "cuda" else "process"
        return (f"speed: {', '.join(self.parts())}; global batch {batch_size * self.world_size} "
                f"(--batch_size {batch_size} per {unit} x {self.world_size})")

    def without_compile(self, why: str) -> SpeedSettings:
        """These settings with eager blocks, for ``why`` (a fallback)."""
        return replace(self, compile=False, why={**self.why, "compile": why})

    def without_graph(self, why: str) -> SpeedSettings:
        """These settings without the CUDA-graphed step, for ``why`` (a fallback)."""
        return replace(self, cuda_graph=False, why={**self.why, "cuda_graph": why})

    def record(self) -> dict[str, Any]:
        """What a checkpoint keeps of the configuration that trained it."""
        return dict(compiled_blocks=self.compile, cuda_graph=self.cuda_graph, precision=self.precision,
                    processes=self.world_size, why=dict(self.why))


def speed_settings(device: torch.device, world_size: int, compile_requested: bool = False,
               cuda_graph_requested: bool = False, eager: bool = False, precision: str = "auto") -> SpeedSettings:
    """Compile, CUDA graph and precision for a run on ``device`` with ``world_size`` processes.

    - CUDA: compiled blocks by default; the whole step as one CUDA graph by default on one GPU,
      not under DDP (its gradient all-reduce runs between backward and the optimizer, outside
      one capturable step) and not with fp16 (its gradient scaler is not captured).
    - ``eager``: neither by default; an explicit ``--compile`` / ``--cuda_graph`` still applies.
    - CPU: as asked (default: neither); a CUDA graph needs a CUDA GPU.
    - precision: ``utils.runtime.device.resolve_precision`` (a table by compute capability on CUDA).
    """
    cuda = device.type == "cuda"
    default = cuda and not eager
    resolved, precision_why = resolve_precision(device, precision)
    notes: list[str] = []
    use_compile = compile_requested or default
    compile_why = ("--compile" if compile_requested else "default on CUDA; --eager turns it off" if default
                   else "--eager" if cuda else "on a CPU only with --compile")
    wanted = cuda_graph_requested or default
    how = "--cuda_graph" if cuda_graph_requested else "default on one GPU; --eager turns it off"
    if not wanted:
        graph, graph_why = False, "--eager" if cuda else "needs a CUDA GPU"
    elif not cuda:
        graph, graph_why = False, "needs a CUDA GPU"
        notes.append("note: --cuda_graph needs one CUDA GPU; training without it")
    elif world_size > 1:
        graph, graph_why = False, "not under DDP: its gradient all-reduce is not in one capturable step"
        if cuda_graph_requested:
            notes.append("note: --cuda_graph needs one GPU, not DDP; training without it")
    elif resolved == "fp16":
        graph, graph_why = False, "not with fp16: its gradient scaler is not captured"
        if cuda_graph_requested:
            notes.append("note: --cuda_graph does not combine with fp16's gradient scaler; training without it")
    else:
        graph, graph_why = True, how
    return SpeedSettings(use_compile, graph, resolved, world_size,
                     dict(compile=compile_why, cuda_graph=graph_why, precision=precision_why), tuple(notes))


def first_step_line(seconds: float, tried: SpeedSettings, used: SpeedSettings) -> str:
    """The log line of a run's first step, printed as soon as it is done: its time (with what was
    tried in it: compiling, the capture) and the configuration that trains from there on (``used``:
    ``tried`` less what failed)."""
    extra = [what for what, on in (("compile", tried.compile), ("CUDA-graph capture", tried.cuda_graph)) if on]
    return (f"first step: {seconds:.1f} s" + (f" ({' and '.join(extra)} included)" if extra else "")
            + f"; training with {', '.join(used.parts()[1:])}")
