"""The restoration engine that demo.py and app.py share (TextPromptIR Sec. 3): a checkpoint loaded
once (network, instruction encoder), a request turned into the steps to run, and an image restored
through them at its own size, tiled when it would not fit the memory budget.

A request is an instruction, a forced task, or neither. Each step is conditioned on one task's
embedding; the plan says in ``lines`` what was understood, for the user to see.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from utils.errors import UserError
from utils.runtime.device import autocast, is_out_of_memory


@dataclass(frozen=True)
class Step:
    """One pass of the network: the task it removes and the (1, text_dim) embedding that says so."""

    task: str
    instruction: str
    embedding: torch.Tensor


@dataclass
class Plan:
    """What a request asks for: the steps in order (none: leave the image as it is), what was
    understood, and warnings, each one line."""

    steps: list[Step]
    lines: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


@dataclass
class Restored:
    """A restored HxWx3 float image, the tile size used (None: whole image) and one line per step."""

    rgb: np.ndarray
    tile: int | None
    lines: list[str]


class Restorer:
    """A checkpoint ready to restore photos: network on its device, and its instruction encoder
    loaded when the network is text-conditioned. Built once; ``plan`` then ``restore`` per request."""

    def __init__(self, ckpt: str | Path, device: str = "auto", impl: str = "auto", precision: str = "auto",
                 compile_blocks: bool = False, compile_cache: str | Path | None = None,
                 text_ckpt: str | Path | None = None, tile: int | None = None, tile_overlap: int = 32,
                 max_memory_gib: float | None = None) -> None:
        from utils.checkpoint import load_for_inference

        self.ckpt_path = Path(ckpt)
        self.precision = precision
        self.tile, self.tile_overlap = tile, tile_overlap
        self.budget = int(max_memory_gib * 2**30) if max_memory_gib else None
        self.model, self.ckpt, self.device = load_for_inference(ckpt, device, impl, precision, compile_blocks,
                                                                compile_cache)
        self.conditioned = self.model.config.text_cond != "none"
        self.encoder = None
        if self.conditioned:
            from utils.text.encoder_link import encoder_for_checkpoint

            self.encoder = encoder_for_checkpoint(ckpt, self.ckpt, self.model.config.text_dim, text_ckpt)
        self._embeddings: dict[str, tuple[torch.Tensor, Any]] = {}

    @property
    def tasks(self) -> tuple[str, ...]:
        """The tasks an instruction or ``--task`` may ask of this checkpoint."""
        from utils.tasks import TASKS

        return TASKS

    def _encode(self, instruction: str) -> tuple[torch.Tensor, Any]:
        """The (1, text_dim) embedding and the encoder's reading of one sentence, cached."""
        if instruction not in self._embeddings:
            it = self.encoder.interpret(instruction)
            self._embeddings[instruction] = it.embedding.float()[None], it  # (1, text_dim)
        return self._embeddings[instruction]

    def plan(self, instruction: str | None = None, task: str | None = None) -> Plan:
        """The steps for an instruction, or a task forced by name with its default instruction."""
        from utils.text.bank import DEFAULT_INSTRUCTIONS
        from utils.text.encoder_link import reading_warnings, understood_line

        if not self.conditioned:
            note = f"note: {self.ckpt_path} is a plain Restormer (no text conditioning); the instruction is ignored"
            return Plan([Step(task or "restore", "", torch.zeros(1, self.model.config.text_dim))], lines=[note])
        if task is None and (instruction is None or not instruction.strip()):
            raise UserError(f"{self.ckpt_path}: this checkpoint cannot read images, so it needs to be told what "
                            "is wrong: give an instruction (e.g. \"remove the rain\") or a task by name")
        if task is not None:
            if task not in self.tasks:
                raise UserError(f"task {task!r}: this checkpoint restores {', '.join(self.tasks)}")
            sentence, label = DEFAULT_INSTRUCTIONS[task], f"instruction (forced task {task}): "
        else:
            sentence, label = instruction, "instruction: "
        embedding, it = self._encode(sentence)
        plan = Plan([Step(task or it.task, sentence, embedding)], lines=[understood_line(it, sentence, label)],
                    warnings=reading_warnings(it, task))
        return plan

    def restore(self, rgb: np.ndarray, plan: Plan, progress: bool = False,
                note: Callable[[str], None] | None = None) -> Restored:
        """Run the plan's steps one after another on an HxWx3 float image in [0, 1]."""
        out, used, lines = rgb, None, []
        for step in plan.steps:
            out, used = forward_image(self.model, out, step.embedding, self.device, self.tile, self.tile_overlap,
                                      self.precision, self.budget, progress, note)
            if len(plan.steps) > 1:
                lines.append(f"step {len(lines) + 1}/{len(plan.steps)}: {step.task}")
        return Restored(out, used, lines)


def forward_image(model: torch.nn.Module, rgb: np.ndarray, embedding: torch.Tensor, device: torch.device,
                  tile: int | None, overlap: int, precision: str, budget: int | None, progress: bool = False,
                  note: Callable[[str], None] | None = None) -> tuple[np.ndarray, int | None]:
    """One pass of the network over an HxWx3 float image; returns the result and the tile size used
    (None: whole). ``tile=None`` chooses it from the memory ``budget``; a run that still runs out of
    memory is retried with tiles half as large (down to 64 px). A NaN/inf result is a UserError."""
    from utils.runtime.tiling import MIN_TILE, auto_tile_size, restore_tiled

    img = torch.from_numpy(np.ascontiguousarray(rgb, dtype=np.float32)).permute(2, 0, 1)[None]  # (1, 3, H, W)
    h, w = img.shape[-2:]
    auto = tile is None
    if auto:
        tile = auto_tile_size(h, w, model.config, device, budget)
    elif tile == 0 or tile >= max(h, w):
        tile = None
    while True:
        try:
            with torch.inference_mode(), autocast(device, precision):
                if tile is None:
                    out = model(img.to(device), embedding.to(device)).float().cpu()
                else:
                    out = restore_tiled(model, img, embedding, tile, min(overlap, tile // 2), progress=progress)
            break
        except (torch.OutOfMemoryError, RuntimeError) as e:
            if not (is_out_of_memory(e) and auto) or (tile is not None and tile <= MIN_TILE):
                raise
            if device.type == "cuda":
                torch.cuda.empty_cache()
            tile = max(MIN_TILE, (min(tile or max(h, w), max(h, w)) // 2) // 8 * 8)
            if note:
                note(f"note: out of memory, retrying with {tile}px tiles")
    if not torch.isfinite(out).all():
        raise UserError("the network's output is NaN/inf, so the checkpoint's weights are broken; "
                        "use another --ckpt")
    return out[0].permute(1, 2, 0).clamp(0, 1).numpy(), tile  # (H, W, 3)


def failure_reason(src: Path | str, e: Exception) -> str:
    """One line for an image ``src`` that could not be restored (demo.py's log, app.py's page)."""
    if isinstance(e, UserError):
        return str(e) if str(src) in str(e) else f"{src}: {e}"
    if is_out_of_memory(e):
        return f"{src}: out of memory; pass a smaller --tile (e.g. 256) or leave --tile out to choose it"
    return f"{src}: {type(e).__name__}: " + (str(e).strip().splitlines() or [""])[0][:200]
