"""The instruction bank (data/instructions/): the sentences, per task or set of tasks.

The bank holds our own paraphrases of "remove the noise / rain / haze / blur / darkness"
(TextPromptIR, arXiv 2312.06162, Sec. 3.1 trains on user instructions per task).

- ``train.tsv`` (one task a row) teaches the encoder and conditions restoration training;
  ``val.tsv`` holds different phrasings that training never sees.
- ``compound_train.tsv`` / ``compound_val.tsv``: requests naming several tasks (task ``a+b``, a
  set: the names in any order), for the instruction head only.
- ``negation_train.tsv`` / ``negation_val.tsv``: requests that ask to keep something ("remove the
  noise but keep the rain" -> denoise), for the instruction head only.
- ``phrasing_train.tsv`` / ``phrasing_val.tsv``: typos, slang, scenes and symptoms, one task a row, for
  the instruction head only; the val file for validation only (the threshold's choice).
- ``unrelated.txt``: off-topic requests the head learns to answer with no task (refusal);
  ``unrelated_val.txt``: others, with the val files the only data the head's threshold is chosen on.
- ``compound_heldout.tsv``, ``negation_heldout.tsv``, ``requests_heldout.tsv`` (everyday phrasing),
  ``phrasing_heldout.tsv`` (typos, slang, symptoms, scenes) and ``unrelated_heldout.txt``: read by
  no training and no choice of setting, only by the report (``test.py --instructions`` / ``--unrelated``).

Their embeddings, computed once by the frozen encoder, are cached by ``utils.text.embeddings``.
"""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from utils.errors import UserError
from utils.tasks import PAPER_TASKS, TASK_SEPARATOR, TASKS, join_tasks, split_tasks

BANK_ROOT = Path(__file__).resolve().parents[2] / "data" / "instructions"
HEADER = ("instruction", "task")

# One fixed instruction per task, taken from val.tsv (never used for training), used to
# condition the network in the benchmark tables of test.py.
DEFAULT_INSTRUCTIONS: dict[str, str] = {
    "denoise": "please reduce the noise",
    "derain": "please get rid of the rain streaks",
    "dehaze": "please get rid of the haze",
    "deblur": "please take the blur out of my photo",
    "lowlight": "make the picture lighter, it's too dark",
}
COMPOUND_PREFIX = "compound_"  # compound_<split>.tsv beside <split>.tsv
NEGATION_PREFIX = "negation_"  # negation_<split>.tsv: requests that ask to keep something
PHRASING_PREFIX = "phrasing_"  # phrasing_<split>.tsv: typos, slang, symptoms (instruction head only)
UNRELATED_FILE = "unrelated.txt"
UNRELATED_VAL_FILE = "unrelated_val.txt"  # off-topic requests for choosing settings, never trained on
HELDOUT_FILES = ("compound_heldout.tsv", "negation_heldout.tsv", "requests_heldout.tsv", "phrasing_heldout.tsv",
                 "unrelated_heldout.txt")  # read by no training and no choice of setting


def _lines(text: str) -> list[str]:
    """Lines split at newlines only: ``str.splitlines`` would also split inside a sentence at
    characters such as U+2028 (line separator) or U+0085."""
    return [line.removesuffix("\r") for line in text.split("\n")]


def _read_lines(p: Path, encoding: str, missing: str) -> list[str]:
    """:func:`_lines` of the text file ``p``; a UserError ``p: no such file; <missing>`` when it is
    absent, or one saying it cannot be read as UTF-8 text."""
    try:
        return _lines(p.read_text(encoding=encoding))
    except FileNotFoundError:
        raise UserError(f"{p}: no such file; {missing}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{p}: cannot read it as UTF-8 text ({exc.__class__.__name__})") from None


def task_set(label: str) -> tuple[str, ...]:
    """``"derain+denoise"`` or ``"denoise+derain"`` -> ``("denoise", "derain")``: a set, in TASKS
    order; ValueError (one line) for an unknown name or a repeated one."""
    names = tuple(n.strip().lower() for n in label.split(TASK_SEPARATOR))
    unknown = [n for n in names if n not in TASKS]
    if unknown:
        hint = ("; off-topic requests go in a plain-text file, one a line (unrelated.txt, test.py --unrelated)"
                if unknown[0] in ("none", "") else "")
        raise ValueError(f"unknown task {unknown[0]!r}; use one of {', '.join(TASKS)}, or several joined with "
                         f"'{TASK_SEPARATOR}'{hint}")
    if len(set(names)) != len(names):
        raise ValueError(f"task set {label!r} names a task twice")
    return split_tasks(join_tasks(names))


def read_instruction_tsv(path: str | Path) -> list[tuple[str, str]]:
    """Read ``instruction<TAB>task`` rows (header line required, blank lines skipped); ``task`` is
    one task or a set ``a+b`` (in any order) and comes back in canonical form (lower case, TASKS order).

    UserError ``file:line: ...`` on a bad header, a wrong field count, an empty instruction, an
    unknown task, a badly written task set or an instruction that repeats an earlier line.
    """
    p = Path(path)
    lines = _read_lines(p, "utf-8-sig", "give a TSV with header 'instruction<TAB>task'")
    if not lines or tuple(f.strip() for f in lines[0].split("\t")) != HEADER:
        raise UserError(f"{p}:1: the first line must be the header 'instruction<TAB>task'")
    rows: list[tuple[str, str]] = []
    seen: dict[str, int] = {}
    for lineno, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != 2:
            raise UserError(f"{p}:{lineno}: expected 2 tab-separated fields (instruction, task), "
                            f"found {len(fields)}; fix that line")
        text = " ".join(fields[0].split())
        if not text:
            raise UserError(f"{p}:{lineno}: empty instruction; write what is wrong with the photo")
        try:
            tasks = task_set(fields[1])
        except ValueError as exc:
            raise UserError(f"{p}:{lineno}: {exc}") from None
        if text.lower() in seen:
            raise UserError(f"{p}:{lineno}: {text!r} repeats line {seen[text.lower()]}; keep one of them")
        seen[text.lower()] = lineno
        rows.append((text, join_tasks(tasks)))
    if not rows:
        raise UserError(f"{p}: no instructions after the header; add lines 'instruction<TAB>task'")
    return rows


def bank_file(split: str, root: str | Path = BANK_ROOT) -> Path:
    """``<root>/<split>.tsv``; UserError for a split name that is not a plain word."""
    if not re.fullmatch(r"[A-Za-z0-9_-]+", split):
        raise UserError(f"bad bank split name {split!r}: use e.g. 'train' or 'val'")
    return Path(root) / f"{split}.tsv"


def load_bank(split: str = "train", root: str | Path = BANK_ROOT,
              required: tuple[str, ...] = PAPER_TASKS) -> dict[str, list[str]]:
    """``{task: [sentences in file order]}`` of ``<root>/<split>.tsv``, for each task (TASKS order)
    that has rows; every task of ``required`` must have some. Single-task rows only: a task set
    there is a UserError pointing to ``compound_<split>.tsv``."""
    path = bank_file(split, root)
    found: dict[str, list[str]] = {t: [] for t in TASKS}
    for text, label in read_instruction_tsv(path):
        if TASK_SEPARATOR in label:
            raise UserError(f"{path}: {text!r} is labelled {label}; requests naming several tasks go in "
                            f"{COMPOUND_PREFIX}{split}.tsv beside it (this file conditions single-task training)")
        found[label].append(text)
    empty = [t for t in required if not found[t]]
    if empty:
        raise UserError(f"{path}: no instructions for {', '.join(empty)}; add at least one per task")
    return {t: s for t, s in found.items() if s}


def load_labelled(split: str = "train", root: str | Path = BANK_ROOT) -> list[tuple[str, tuple[str, ...]]]:
    """Every labelled request of a split for the instruction head: ``<split>.tsv`` and, when present,
    ``compound_<split>.tsv``, ``negation_<split>.tsv`` and ``phrasing_<split>.tsv``, as ``(sentence, task set)``."""
    rows = [(text, (task,)) for task, sentences in load_bank(split, root).items() for text in sentences]
    for prefix in (COMPOUND_PREFIX, NEGATION_PREFIX, PHRASING_PREFIX):
        extra = Path(root) / f"{prefix}{split}.tsv"
        if extra.is_file():
            rows += [(text, task_set(label)) for text, label in read_instruction_tsv(extra)]
    return rows


def read_unrelated(path: str | Path) -> list[str]:
    """Off-topic requests of a plain-text file (one a line; blanks and #-comments skipped)."""
    lines = _read_lines(Path(path), "utf-8", "put one off-topic sentence per line there")
    return [" ".join(l.split()) for l in lines if l.strip() and not l.lstrip().startswith("#")]


def load_unrelated(root: str | Path = BANK_ROOT, name: str = UNRELATED_FILE) -> list[str]:
    """Off-topic sentences of ``<root>/unrelated.txt`` (or ``name``, e.g. UNRELATED_VAL_FILE)."""
    return read_unrelated(Path(root) / name)


def bank_digest(split: str = "train", root: str | Path = BANK_ROOT) -> str:
    """SHA-256 of a bank's sentences and tasks (not of its file's formatting)."""
    bank = load_bank(split, root)
    return hashlib.sha256(json.dumps([[t, s] for t, s in bank.items()], ensure_ascii=False).encode()).hexdigest()
