"""The instruction bank (data/instructions/): the sentences, per task.

The bank holds our own paraphrases of "remove the noise / rain / haze" (TextPromptIR,
arXiv 2312.06162, Sec. 3.1 trains on user instructions per task).  ``train.tsv`` teaches the
encoder and conditions restoration training; ``val.tsv`` holds different phrasings that training
never sees; ``unrelated.txt`` holds off-topic requests the task head learns to be unsure about.

Their embeddings, computed once by the frozen encoder, are cached by ``utils.text.embeddings``.
"""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from utils.errors import UserError
from utils.tasks import TASKS

BANK_ROOT = Path(__file__).resolve().parents[2] / "data" / "instructions"
HEADER = ("instruction", "task")

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


def bank_digest(split: str = "train", root: str | Path = BANK_ROOT) -> str:
    """SHA-256 of a bank's sentences and tasks (not of its file's formatting)."""
    bank = load_bank(split, root)
    return hashlib.sha256(json.dumps([[t, bank[t]] for t in TASKS], ensure_ascii=False).encode()).hexdigest()
