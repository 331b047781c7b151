"""The restoration engine that demo.py and app.py share (TextPromptIR Sec. 3): a checkpoint loaded
once (network, instruction encoder), a request turned into the steps to run, and an image restored
through them at its own size, tiled when it would not fit the memory budget.

A request is an instruction, a forced task, or neither. Each step is conditioned on one task's
embedding; the plan says in ``lines`` what was understood, for the user to see.
"""
from __future__ import annotations

from argparse import Namespace
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from net.degradation_classifier import CLEAR, predict_degradations, present, shown, unsure
from utils.checkpoint import load_classifier
from utils.errors import UserError
from utils.runtime.device import autocast, is_out_of_memory
from utils.runtime.inference import load_for_inference
from utils.runtime.tiling import MIN_TILE, auto_tile_size, restore_tiled
from utils.tasks import TASK_WORDS, restore_order
from utils.text.bank import DEFAULT_INSTRUCTIONS
from utils.text.encoder_link import checkpoint_tasks, encoder_for_checkpoint, reading_warnings, understood_line
from utils.text.understand import understand, untrained_tasks

AUTO = "auto"  # the task that means "read it off the image"
# What conditions each pass of a compound request: "default", the task's default instruction, or
# "clause", its own part of the request; chosen by scoring both on the composite sets with held-out compound requests
# (docs/benchmarks/routes.md#what-conditions-each-pass).
STEP_TEXT = "default"
UNSEEN = 0.1  # an image "shows no sign of" a degradation at or below this probability (clearly shows: CLEAR)


@dataclass(frozen=True)
class Step:
    """One pass of the network: the task it removes and the (1, text_dim) embedding that says so."""

    task: str
    instruction: str
    embedding: torch.Tensor


@dataclass
class RestorePlan:
    """What a request asks for: the steps in order (none: leave the image as it is), what was
    understood, and warnings, each one line. ``unsure``: the degradations the blind route's reading
    could go either way on (a probability in the classifier's unsure band), for the page to show."""

    steps: list[Step]
    lines: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    unsure: tuple[str, ...] = ()


@dataclass
class Restored:
    """A restored HxWx3 float image, the tile size used (None: whole image) and one line per step."""

    rgb: np.ndarray
    tile: int | None
    lines: list[str]


class Restorer:
    """A checkpoint (``last.pt``, a release folder or a Hub id) ready to restore photos: network on
    its device, and its instruction encoder loaded when the network is text-conditioned. Built once;
    ``plan`` then ``restore`` per request, or ``restorer(rgb, instruction)``."""

    def __init__(self, ckpt: str | Path, device: str = "auto", impl: str = "auto", precision: str = "auto",
                 compile_blocks: bool = False, compile_cache: str | Path | None = None,
                 text_ckpt: str | Path | None = None, tile: int | None = None, tile_overlap: int = 32,
                 max_memory_gib: float | None = None, step_text: str = STEP_TEXT) -> None:
        self.ckpt_path = Path(ckpt)
        self.precision = precision
        self.tile, self.tile_overlap = tile, tile_overlap
        self.budget = int(max_memory_gib * 2**30) if max_memory_gib else None
        self.model, self.ckpt, self.device = load_for_inference(ckpt, device, impl, precision, compile_blocks,
                                                                compile_cache)
        self.conditioned = self.model.config.text_cond != "none"
        self.encoder = None
        if self.conditioned:
            self.encoder = encoder_for_checkpoint(ckpt, self.ckpt, self.model.config.text_dim, text_ckpt)
        self._embeddings: dict[str, torch.Tensor] = {}
        self.classifier = load_classifier(self.ckpt, self.ckpt_path) if self.conditioned else None
        self.step_text = step_text

    def __call__(self, rgb: np.ndarray, instruction: str | None = None, task: str | None = None) -> np.ndarray:
        """One HxWx3 float image in [0, 1] restored as ``instruction`` (or the forced ``task``) asks;
        with neither, as the image itself shows (the blind route). ``Restorer("release/<name>")``
        loads a release folder whole: network, instruction encoder and classifier."""
        return self.restore(rgb, self.plan(instruction, task, rgb)).rgb

    @property
    def tasks(self) -> tuple[str, ...]:
        """The tasks this checkpoint was trained for: what an instruction or a task may ask of it."""
        return checkpoint_tasks(self.ckpt)

    @property
    def reads_images(self) -> bool:
        """True when the checkpoint carries a degradation classifier (the blind route)."""
        return self.classifier is not None

    def _encode(self, sentence: str) -> torch.Tensor:
        """The (1, text_dim) embedding of one sentence, cached."""
        if sentence not in self._embeddings:
            self._embeddings[sentence] = self.encoder.interpret(sentence).embedding.float()[None]  # (1, text_dim)
        return self._embeddings[sentence]

    def _step(self, task: str, clause: str | None = None) -> Step:
        """One pass for ``task``, conditioned on its own part of the request (``clause``, when
        ``step_text`` is "clause" and there is one) or else on the task's default instruction."""
        sentence = clause if clause and self.step_text == "clause" else DEFAULT_INSTRUCTIONS[task]
        return Step(task, sentence, self._encode(sentence))

    def read_image(self, rgb: np.ndarray, what: str = "the image") -> dict[str, float]:
        """The classifier's probability of each degradation it knows in an HxWx3 float image."""
        return read_degradations(self.classifier, rgb, what)

    def plan(self, instruction: str | None = None, task: str | None = None, rgb: np.ndarray | None = None,
             what: str = "the image") -> RestorePlan:
        """The steps for a request: a task forced by name (its default instruction), an instruction
        (each task it names, one pass each in ``RESTORE_ORDER``), or, with neither or ``task="auto"``,
        what the image ``rgb`` shows (the blind route). A request the image contradicts gets a
        warning; the instruction still wins."""
        if not self.conditioned:
            note = f"note: {self.ckpt_path} is a plain Restormer (no text conditioning); the instruction is ignored"
            return RestorePlan([Step(task or "restore", "", torch.zeros(1, self.model.config.text_dim))], lines=[note])
        if task == AUTO or (task is None and (instruction is None or not instruction.strip())):
            return self._blind_plan(rgb, what)
        if task is not None:
            untrained = untrained_tasks(str(self.ckpt_path), self.tasks, [task])
            if untrained:
                raise UserError(f"task {task!r}: {untrained}")
            step = self._step(task)
            it = self.encoder.interpret(step.instruction)
            return RestorePlan([step], lines=[understood_line(it, step.instruction, f"instruction (forced task {task}): ")],
                        warnings=reading_warnings(it, task))
        it = understand(self.encoder, instruction, self.tasks, source=str(self.ckpt_path))
        order = restore_order(it.tasks)
        plan = RestorePlan([self._step(t, it.clauses.get(t)) for t in order], lines=[f"instruction: {it.summary}"],
                    warnings=list(it.warnings))
        if len(order) > 1:
            plan.lines.append("restoring " + " then ".join(TASK_WORDS[t] for t in order) + ", one pass each")
        if self.reads_images and rgb is not None:
            plan.warnings += disagreement(it.tasks, self._readable(rgb, what))
        return plan

    def _readable(self, rgb: np.ndarray, what: str) -> dict[str, float]:
        """The image's reading, or nothing when it is too small to classify (the text decides alone)."""
        try:
            return self.read_image(rgb, what)
        except UserError:
            return {}

    def _blind_plan(self, rgb: np.ndarray | None, what: str) -> RestorePlan:
        if not self.reads_images:
            raise UserError(f"{self.ckpt_path}: this checkpoint cannot read images (it has no degradation "
                            "classifier), so say what is wrong: give an instruction (e.g. \"remove the rain\") or "
                            f"--task; or add a classifier with `python train.py --stage classifier --resume "
                            f"{self.ckpt_path}`")
        if rgb is None:
            raise ValueError("the blind route needs the image")
        probs = self.read_image(rgb, what)
        seen = seen_tasks(probs, self.tasks)
        doubt = unsure_tasks(probs, self.tasks)
        if not seen:
            return RestorePlan([], lines=[f"{what} looks clean ({looks(probs)}): left unchanged{unsure_note(doubt, probs)}; "
                                   "name a task with --task or --instruction to restore it anyway"], unsure=doubt)
        return RestorePlan([self._step(t) for t in restore_order(seen)],
                    lines=[f"{what} looks like {named(seen, probs)}"
                           + (f"; restoring {' then '.join(restore_order(seen))}" if len(seen) > 1 else "")
                           + unsure_note(doubt, probs, seen)], unsure=doubt)

    def restore(self, rgb: np.ndarray, plan: RestorePlan, progress: bool = False,
                note: Callable[[str], None] | None = None) -> Restored:
        """Run the plan's steps one after another on an HxWx3 float image in [0, 1]."""
        out, used, lines = rgb, None, []
        for step in plan.steps:
            out, used = forward_image(self.model, out, step.embedding, self.device, self.tile, self.tile_overlap,
                                      self.precision, self.budget, progress, note)
            if len(plan.steps) > 1:
                lines.append(f"step {len(lines) + 1}/{len(plan.steps)}: {step.task}")
        return Restored(out, used, lines)


def read_degradations(classifier: torch.nn.Module, rgb: np.ndarray, what: str = "the image") -> dict[str, float]:
    """The degradation classifier's probability of each degradation it knows in an HxWx3 float image
    in [0, 1] (read as 8-bit, as it was trained)."""
    image = np.clip(np.rint(np.asarray(rgb, np.float32) * 255.0), 0, 255).astype(np.uint8)  # (H, W, 3)
    return predict_degradations(classifier, image, what=what)


def seen_tasks(probs: dict[str, float], known: Sequence[str]) -> tuple[str, ...]:
    """The degradations the classifier found that the checkpoint can restore (net.degradation_classifier.shown:
    above its threshold, less the unsure ones when it clearly shows another)."""
    return shown({t: p for t, p in probs.items() if t in set(known)})


def unsure_tasks(probs: dict[str, float], known: Sequence[str]) -> tuple[str, ...]:
    """The degradations whose reading could go either way (net.degradation_classifier.unsure)."""
    return tuple(t for t in unsure(probs) if t in set(known))


def unsure_note(tasks: Sequence[str], probs: dict[str, float], restored: Sequence[str] = ()) -> str:
    """"; unsure about haze (0.58)" for the plan's line, or nothing; "..., left alone beside the clear
    reading" when an unsure degradation read present is not among the ``restored`` ones."""
    if not tasks:
        return ""
    left = [t for t in present(probs) if t in tasks and t not in restored]
    return f"; unsure about {named(tasks, probs)}" + (
        f", {' and '.join(TASK_WORDS[t] for t in left)} left alone beside the clear reading" if left else "")


def looks(probs: dict[str, float]) -> str:
    """"rain 0.97, noise 0.03, ...": the classifier's reading in words."""
    return ", ".join(f"{TASK_WORDS[t]} {p:.2f}" for t, p in probs.items())


def named(tasks: Sequence[str], probs: dict[str, float]) -> str:
    """"rain (0.97) and haze (0.55)": some tasks' degradations in words, with their probabilities."""
    return " and ".join(f"{TASK_WORDS[t]} ({probs[t]:.2f})" for t in tasks)


def disagreement(asked: tuple[str, ...], probs: dict[str, float]) -> list[str]:
    """One warning when the image clearly shows a degradation the request does not ask for while it
    shows no sign of what the request asks for, e.g. the text says rain and the image looks hazy."""
    seen = [t for t, p in probs.items() if p >= CLEAR and t not in asked]
    unseen = [t for t in asked if t in probs and probs[t] <= UNSEEN]
    if not seen or not unseen:
        return []
    return [f"the instruction asks to remove {' and '.join(TASK_WORDS[t] for t in unseen)}, but the image shows "
            f"little of it: {named(unseen, probs)}, and looks like {named(seen, probs)}; following the instruction "
            "(--task auto follows the image)"]


def forward_image(model: torch.nn.Module, rgb: np.ndarray, embedding: torch.Tensor, device: torch.device,
                  tile: int | None, overlap: int, precision: str, budget: int | None, progress: bool = False,
                  note: Callable[[str], None] | None = None) -> tuple[np.ndarray, int | None]:
    """One pass of the network over an HxWx3 float image; returns the result and the tile size used
    (None: whole). ``tile=None`` chooses it from the memory ``budget``; a run that still runs out of
    memory is retried with tiles half as large (down to 64 px). A NaN/inf result is a UserError."""
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


def load_restorer(args: Namespace) -> Restorer:
    """The checkpoint's network and encoder (a ``Restorer``) from the inference and restore
    options (``options.add_inference_options``, ``options.add_restore_options``), loaded once for
    every image."""
    return Restorer(args.ckpt, args.device, args.impl, args.precision, args.compile, args.compile_cache,
                    args.text_ckpt, args.tile, args.tile_overlap, args.max_memory)
