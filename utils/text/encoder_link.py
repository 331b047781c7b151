"""The embedding of a user's instruction (TextPromptIR Sec. 3.1): find the instruction
encoder a checkpoint was trained with, make sure it is that very encoder, encode the
instruction once and tell the user what it understood.

A restoration checkpoint records its encoder as ``text_encoder = {"dir", "fingerprint", ...}``:
``dir`` relative to the checkpoint's own folder (older checkpoints: relative to the working
directory) and ``fingerprint`` the hash of the encoder's weights. A re-trained or replaced
encoder has another fingerprint and is refused, since its embeddings would steer the network
wrongly.
"""
from __future__ import annotations

import ast
import os
import sys
from pathlib import Path
from typing import Any

import torch

from net.text_encoder import InstructionEncoder, Interpretation, has_encoder_weights
from utils.atomic import write_text
from utils.errors import UserError
from utils.tasks import DEGRADATIONS, PAPER_TASKS, TASKS, join_tasks
from utils.text.embeddings import read_embeddings

DEFAULT_TEXT_CKPT = "ckpt/text_encoder"
DEPENDENTS_FILE = "restoration_checkpoints.txt"  # in the encoder folder: checkpoints trained with it
ECHO_CHARS = 100  # instructions longer than this are shortened when echoed


def shorten(text: str, limit: int = ECHO_CHARS) -> str:
    """``text`` cut to ``limit`` characters with an ellipsis and the full length."""
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text)} characters)"


def encoder_record(cache: dict[str, Any], encoder_dir: str | Path, run_dir: str | Path) -> dict[str, Any]:
    """What a restoration checkpoint in ``run_dir`` stores about its instruction encoder, from the
    encoder's embedding cache (``utils.text.embeddings.training_embeddings``): its folder relative
    to the checkpoint's, and the identity of its weights and instruction bank."""
    return {"dir": os.path.relpath(Path(encoder_dir).resolve(), Path(run_dir).resolve()),
            "fingerprint": cache["fingerprint"], "bank_sha256": cache["bank_sha256"],
            "id": cache["encoder_id"], "hidden_size": cache["hidden_size"]}


def _record_entry(encoder_dir: str | Path, ckpt_path: str | Path) -> str:
    """How the record names a checkpoint: relative to the encoder folder (so that moving or copying
    the whole project keeps it true), absolute only where no relative path exists (another drive)."""
    try:
        return Path(os.path.relpath(Path(ckpt_path).resolve(), Path(encoder_dir).resolve())).as_posix()
    except ValueError:
        return str(Path(ckpt_path).resolve())


def _record_lines(encoder_dir: str | Path) -> list[str]:
    listing = Path(encoder_dir) / DEPENDENTS_FILE
    if not listing.is_file():
        return []
    return [line.strip() for line in listing.read_text(encoding="utf-8").splitlines() if line.strip()]


def register_dependent(encoder_dir: str | Path, ckpt_path: str | Path) -> None:
    """Note in the encoder folder that ``ckpt_path`` is trained with this encoder, so that the text
    stage does not replace the encoder under it. Entries of the earlier format (absolute paths)
    that still exist are rewritten relative to the folder."""
    entries = [_record_entry(encoder_dir, line) if Path(line).is_absolute() and Path(line).is_file() else line
               for line in _record_lines(encoder_dir)]
    entries = list(dict.fromkeys(entries + [_record_entry(encoder_dir, ckpt_path)]))
    write_text(Path(encoder_dir) / DEPENDENTS_FILE, "".join(f"{e}\n" for e in entries), replace=True)


def dependents(encoder_dir: str | Path, existing_only: bool = True) -> list[Path]:
    """The restoration checkpoints registered as trained with the encoder in ``encoder_dir``
    (entries relative to that folder, or absolute as the earlier format wrote them)."""
    paths = [Path(line) if Path(line).is_absolute() else Path(os.path.normpath(Path(encoder_dir) / line))
             for line in _record_lines(encoder_dir)]
    return [p for p in paths if p.is_file()] if existing_only else paths


def stored_encoder_dir(ckpt_path: str | Path, ckpt: dict[str, Any]) -> Path:
    """The encoder folder a checkpoint names: relative to the checkpoint's folder, else (older
    checkpoints) to the working directory; ``ckpt/text_encoder`` when it names none."""
    stored = (ckpt.get("text_encoder") or {}).get("dir")
    if not stored:
        return Path(DEFAULT_TEXT_CKPT)
    beside = Path(os.path.normpath(Path(ckpt_path).parent / stored))
    return beside if beside.is_dir() or Path(stored).is_absolute() else Path(stored)


def checkpoint_encoder_dir(ckpt_path: str | Path, ckpt: dict[str, Any], override: str | Path | None) -> Path:
    return Path(override) if override else stored_encoder_dir(ckpt_path, ckpt)


def stored_default_embeddings(ckpt_path: str | Path, ckpt: dict[str, Any],
                              override: str | Path | None = None) -> dict[str, torch.Tensor] | None:
    """Each task's default-instruction embedding from the encoder folder's ``embeddings.pt``, when the
    folder holds no encoder weights (a training machine's copy) and the cache is of the encoder
    the checkpoint was trained with; None when the encoder itself should be used."""
    folder = checkpoint_encoder_dir(ckpt_path, ckpt, override)
    if has_encoder_weights(folder):
        return None
    cache = read_embeddings(folder)
    expected = (ckpt.get("text_encoder") or {}).get("fingerprint")
    if cache is None or "defaults" not in cache or (expected and cache["fingerprint"] != expected):
        return None
    print(f"{folder}: no encoder weights, using the stored embeddings of the default instructions")
    return cache["defaults"]


def missing_encoder(ckpt_path: str | Path, folder: Path, override: str | Path | None) -> UserError:
    """The one line for an encoder folder that holds no encoder: the folder used in training is
    named first (a copied or moved checkpoint whose relative link broke), since an encoder trained
    anew is not the one the checkpoint was trained with and would be refused."""
    if override:
        return UserError(f"--text_ckpt {override}: no fine-tuned instruction encoder there; pass the encoder "
                         f"folder {ckpt_path} was trained with (a new one from `python train.py --stage text` "
                         "needs the restoration net trained again with it)")
    return UserError(f"{ckpt_path}: its instruction encoder is not at {folder} (was the checkpoint copied or "
                     "moved without it?); pass --text_ckpt with the encoder folder used in training, or put "
                     f"that folder at {folder}; only if it is lost: `python train.py --stage text`, then train "
                     "the restoration net again with the new encoder")


def encoder_for_checkpoint(ckpt_path: str | Path, ckpt: dict[str, Any], text_dim: int,
                           override: str | Path | None = None) -> InstructionEncoder:
    """Load the instruction encoder of a restoration checkpoint (or ``override``) and check that
    it is the one the checkpoint was trained with: same width and, where recorded, same weights."""
    folder = checkpoint_encoder_dir(ckpt_path, ckpt, override)
    if not has_encoder_weights(folder):
        raise missing_encoder(ckpt_path, folder, override)
    try:
        encoder = InstructionEncoder.load(folder)
    except UserError as e:
        raise UserError(f"{e} (or pass --text_ckpt with the encoder folder used in training)") from None
    if encoder.hidden_size != text_dim:
        raise UserError(f"{folder}: this encoder gives {encoder.hidden_size}-d embeddings but {ckpt_path} "
                        f"expects {text_dim}-d; pass --text_ckpt with the encoder used in training")
    expected = (ckpt.get("text_encoder") or {}).get("fingerprint")
    if expected and encoder.fingerprint() != expected:
        raise UserError(f"{folder}: this is not the instruction encoder {ckpt_path} was trained with "
                        "(it was re-trained or replaced since); pass --text_ckpt with that encoder, "
                        "or train the restoration net again with this one")
    return encoder


def checkpoint_tasks(ckpt: dict[str, Any]) -> tuple[str, ...]:
    """The tasks a restoration checkpoint was trained for (TASKS order), from the ``de_type`` of the
    options it records (a list, or its text as train.py stores it); the paper's three tasks when it
    records none (checkpoints written before options were stored)."""
    de_type = (ckpt.get("options") or {}).get("de_type")
    if isinstance(de_type, str):
        try:
            de_type = ast.literal_eval(de_type)
        except (ValueError, SyntaxError):
            de_type = [de_type]
    if not isinstance(de_type, (list, tuple)):
        return PAPER_TASKS
    names = {str(d).split("_")[0] for d in de_type if str(d) in DEGRADATIONS or str(d) in TASKS}
    return tuple(t for t in TASKS if t in names) or PAPER_TASKS


def instruction_embedding(encoder: InstructionEncoder, instruction: str, label: str = "",
                          expected_task: str | None = None) -> torch.Tensor:
    """Encode one instruction, print what the encoder understood (task, confidence, warnings)
    and return its (text_dim,) float32 embedding. ``expected_task`` warns when the encoder reads
    a task's own default instruction as another task."""
    it = encoder.interpret(instruction)
    print(understood_line(it, instruction, label))
    for w in reading_warnings(it, expected_task):
        print(f"warning: {w}", file=sys.stderr)
    return it.embedding.float()


def understood_line(it: Interpretation, instruction: str, label: str = "") -> str:
    """One line saying how the encoder read ``instruction``: the task, its confidence, every probability."""
    probs = ", ".join(f"{t} {p:.2f}" for t, p in it.probs.items())
    return (f"{label}\"{shorten(' '.join(instruction.split()))}\" -> understood as {read_as(it)} "
            f"(confidence {it.confidence:.2f}; {probs})")


def read_as(it: Interpretation) -> str:
    """The tasks the encoder read, joined ("derain+denoise"), or "none of the tasks"."""
    return join_tasks(it.tasks) if it.tasks else "none of the tasks"


def reading_warnings(it: Interpretation, expected_task: str | None = None) -> list[str]:
    """The encoder's warnings, and one when a task's own default instruction reads as another task."""
    warnings = list(it.warnings)
    if expected_task and it.tasks != (expected_task,):
        warnings.append(f"the encoder reads the {expected_task} instruction as {read_as(it)}; "
                        "was it trained for this checkpoint?")
    return warnings
