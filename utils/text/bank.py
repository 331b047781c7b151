"""The instruction bank (data/instructions/) and its cached embeddings.

The bank holds our own paraphrases of "remove the noise / rain / haze" (TextPromptIR,
arXiv 2312.06162, Sec. 3.1 trains on user instructions per task).  ``train.tsv`` teaches the
encoder and conditions restoration training; ``val.tsv`` holds different phrasings that training
never sees; ``unrelated.txt`` holds off-topic requests the task head learns to be unsure about.

For restoration the fine-tuned encoder is frozen, so every bank sentence is embedded once and
stored beside the encoder (``prompts.pt``); a Dataset only hands out row indices into that table.
"""
from __future__ import annotations

import hashlib
import json
import pickle
import re
from pathlib import Path

import torch

from net.text_encoder import InstructionEncoder, has_encoder_weights
from utils.errors import UserError, not_weights_error
from utils.tasks import TASKS

BANK_ROOT = Path(__file__).resolve().parents[2] / "data" / "instructions"
HEADER = ("instruction", "task")
PROMPTS_FILE = "prompts.pt"  # in the encoder folder: what restoration training needs from it

# One fixed instruction per task, taken from val.tsv (never used for training), used to
# condition the network in the benchmark tables of test.py.
DEFAULT_INSTRUCTIONS: dict[str, str] = {
    "denoise": "please reduce the noise",
    "derain": "please get rid of the rain streaks",
    "dehaze": "please get rid of the haze",
}


def _lines(text: str) -> list[str]:
    """Lines split at newlines only: ``str.splitlines`` would also split inside a sentence at
    characters such as U+2028 (line separator) or U+0085."""
    return [line.removesuffix("\r") for line in text.split("\n")]


def read_instruction_tsv(path: str | Path) -> list[tuple[str, str]]:
    """Read ``instruction<TAB>task`` rows (header line required, blank lines skipped).

    UserError (with the line number) on a bad header, a wrong field count, an empty
    instruction or a task outside denoise/derain/dehaze.
    """
    p = Path(path)
    try:
        lines = _lines(p.read_text(encoding="utf-8-sig"))
    except FileNotFoundError:
        raise UserError(f"{p}: no such file; give a TSV with header 'instruction<TAB>task'") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{p}: cannot read it as UTF-8 text ({exc.__class__.__name__})") from None
    if not lines or tuple(f.strip() for f in lines[0].split("\t")) != HEADER:
        raise UserError(f"{p}:1: the first line must be the header 'instruction<TAB>task'")
    rows: list[tuple[str, str]] = []
    for lineno, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != 2:
            raise UserError(f"{p}:{lineno}: expected 2 tab-separated fields (instruction, task), "
                            f"found {len(fields)}; fix that line")
        text, task = " ".join(fields[0].split()), fields[1].strip().lower()
        if not text:
            raise UserError(f"{p}:{lineno}: empty instruction; write what is wrong with the photo")
        if task not in TASKS:
            raise UserError(f"{p}:{lineno}: unknown task {fields[1].strip()!r}; use one of {', '.join(TASKS)}")
        rows.append((text, task))
    if not rows:
        raise UserError(f"{p}: no instructions after the header; add lines 'instruction<TAB>task'")
    return rows


def bank_file(split: str, root: str | Path = BANK_ROOT) -> Path:
    """``<root>/<split>.tsv``; UserError for a split name that is not a plain word."""
    if not re.fullmatch(r"[A-Za-z0-9_-]+", split):
        raise UserError(f"bad bank split name {split!r}: use e.g. 'train' or 'val'")
    return Path(root) / f"{split}.tsv"


def load_bank(split: str = "train", root: str | Path = BANK_ROOT) -> dict[str, list[str]]:
    """``{task: [sentences in file order]}`` for every task of ``<root>/<split>.tsv``."""
    path = bank_file(split, root)
    bank: dict[str, list[str]] = {t: [] for t in TASKS}
    for text, task in read_instruction_tsv(path):
        bank[task].append(text)
    empty = [t for t, s in bank.items() if not s]
    if empty:
        raise UserError(f"{path}: no instructions for {', '.join(empty)}; add at least one per task")
    return bank


def load_unrelated(root: str | Path = BANK_ROOT) -> list[str]:
    """Off-topic sentences of ``<root>/unrelated.txt`` (one a line; blanks and #-comments skipped)."""
    path = Path(root) / "unrelated.txt"
    try:
        lines = _lines(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path}: no such file; put one off-topic sentence per line there") from None
    return [" ".join(l.split()) for l in lines if l.strip() and not l.lstrip().startswith("#")]


def bank_embeddings(encoder: InstructionEncoder, split: str = "train",
                    root: str | Path = BANK_ROOT) -> tuple[torch.Tensor, dict[str, list[int]]]:
    """Embeddings of every bank sentence and, per task, their row indices: ``table (N, hidden)
    float32`` (rows grouped by task in TASKS order, file order within a task) and
    ``{task: [row, ...]}``."""
    bank = load_bank(split, root)
    index: dict[str, list[int]] = {}
    row = 0
    for t in TASKS:
        index[t] = list(range(row, row + len(bank[t])))
        row += len(bank[t])
    return encoder.embed([s for t in TASKS for s in bank[t]]), index


def bank_digest(split: str = "train", root: str | Path = BANK_ROOT) -> str:
    """SHA-256 of a bank's sentences and tasks (not of its file's formatting)."""
    bank = load_bank(split, root)
    return hashlib.sha256(json.dumps([[t, bank[t]] for t in TASKS], ensure_ascii=False).encode()).hexdigest()


def write_prompts(encoder: InstructionEncoder, folder: str | Path, root: str | Path = BANK_ROOT) -> dict:
    """Store in ``folder/prompts.pt`` everything restoration training takes from the frozen encoder:
    the train bank's embeddings and rows per task, each task's default instruction embedding,
    and the encoder's fingerprint."""
    table, rows = bank_embeddings(encoder, "train", root)
    defaults = encoder.embed([DEFAULT_INSTRUCTIONS[t] for t in TASKS])
    prompts = {"table": table, "rows": rows, "defaults": dict(zip(TASKS, defaults)),
               "fingerprint": encoder.fingerprint(), "bank_sha256": bank_digest("train", root),
               "hidden_size": encoder.hidden_size, "encoder_id": encoder.encoder_id}
    path = Path(folder) / PROMPTS_FILE
    tmp = path.with_suffix(".tmp")
    torch.save(prompts, tmp)
    tmp.replace(path)
    return prompts


def read_prompts(folder: str | Path) -> dict | None:
    """``folder/prompts.pt`` as written by :func:`write_prompts`, or None if absent or unreadable
    (it is then made again); a UserError if it holds Python objects other than tensors."""
    path = Path(folder) / PROMPTS_FILE
    try:
        prompts = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise not_weights_error(path, "instruction-encoder file", "delete it (training makes it again from the "
                                "encoder) or copy the encoder folder again from where it was trained") from None
    except (OSError, RuntimeError, EOFError, ValueError):
        return None
    return prompts if isinstance(prompts, dict) and {"table", "rows", "fingerprint"} <= set(prompts) else None


def training_prompts(folder: str | Path, root: str | Path = BANK_ROOT) -> dict:
    """The prompts of :func:`write_prompts` for the encoder in ``folder`` and the bank in ``root``:
    read from ``prompts.pt`` when it matches both, else computed and stored. A folder holding only
    ``prompts.pt`` (no encoder weights, e.g. copied to a training machine) is used as it is,
    provided the bank has not changed."""
    folder = Path(folder)
    stored = read_prompts(folder)
    digest = bank_digest("train", root)
    if not has_encoder_weights(folder):
        if stored is None:
            InstructionEncoder.load(folder)  # raises the one-line "run --stage text" error
        if stored["bank_sha256"] != digest:
            raise UserError(f"{folder / PROMPTS_FILE}: made for another instruction bank than {root}, and the "
                            "encoder's weights are not here to redo it; copy the whole encoder folder")
        return stored
    encoder = InstructionEncoder.load(folder)
    if stored and stored["bank_sha256"] == digest and stored["fingerprint"] == encoder.fingerprint():
        return stored
    return write_prompts(encoder, folder, root)
