"""The instruction bank (data/instructions/) and its cached embeddings.

The bank holds our own paraphrases of "remove the noise / rain / haze" (TextPromptIR,
arXiv 2312.06162, Sec. 3.1 trains on user instructions per task).  ``train.tsv`` teaches the
encoder and conditions restoration training; ``val.tsv`` holds different phrasings that training
never sees; ``unrelated.txt`` holds off-topic requests the task head learns to be unsure about.

For restoration the fine-tuned encoder is frozen, so every bank sentence is embedded once and
cached on disk; a Dataset only hands out row indices into that table.
"""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import torch

from net.text_encoder import TASKS, InstructionEncoder
from utils.errors import UserError

BANK_ROOT = Path(__file__).resolve().parents[1] / "data" / "instructions"
HEADER = ("instruction", "task")

# One fixed instruction per task, taken from val.tsv (never used for training), used to
# condition the network in the benchmark tables of test.py.
DEFAULT_INSTRUCTIONS: dict[str, str] = {
    "denoise": "please reduce the noise",
    "derain": "please get rid of the rain streaks",
    "dehaze": "please get rid of the haze",
}


def read_instruction_tsv(path: str | Path) -> list[tuple[str, str]]:
    """Read ``instruction<TAB>task`` rows (header line required, blank lines skipped).

    UserError (with the line number) on a bad header, a wrong field count, an empty
    instruction or a task outside denoise/derain/dehaze.
    """
    p = Path(path)
    try:
        lines = p.read_text(encoding="utf-8-sig").splitlines()
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


def _split_path(split: str, root: str | Path) -> Path:
    if not re.fullmatch(r"[A-Za-z0-9_-]+", split):
        raise UserError(f"bad bank split name {split!r}: use e.g. 'train' or 'val'")
    return Path(root) / f"{split}.tsv"


def load_bank(split: str = "train", root: str | Path = BANK_ROOT) -> dict[str, list[str]]:
    """``{task: [sentences in file order]}`` for every task of ``<root>/<split>.tsv``."""
    path = _split_path(split, root)
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
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise UserError(f"{path}: no such file; put one off-topic sentence per line there") from None
    return [" ".join(l.split()) for l in lines if l.strip() and not l.lstrip().startswith("#")]


def bank_embeddings(encoder: InstructionEncoder, split: str = "train", root: str | Path = BANK_ROOT,
                    cache_dir: str | Path | None = None) -> tuple[torch.Tensor, dict[str, list[int]]]:
    """Embeddings of every bank sentence and, per task, their row indices.

    Returns ``table (N, hidden) float32`` (rows grouped by task in TASKS order, file order within
    a task) and ``{task: [row, ...]}``.  With ``cache_dir`` the result is stored as
    ``bank_<split>_<key>.pt``, ``key`` hashing the encoder weights (:meth:`fingerprint`), its
    pooling and the bank sentences, so an edited bank or another encoder is recomputed.
    """
    bank = load_bank(split, root)
    sentences = [s for t in TASKS for s in bank[t]]
    index: dict[str, list[int]] = {}
    row = 0
    for t in TASKS:
        index[t] = list(range(row, row + len(bank[t])))
        row += len(bank[t])

    cache_file = None
    key = ""
    if cache_dir is not None:
        payload = json.dumps({"encoder": encoder.fingerprint(), "split": split,
                              "bank": [[t, bank[t]] for t in TASKS]}, ensure_ascii=False)
        key = hashlib.sha256(payload.encode("utf-8")).hexdigest()
        cache_file = Path(cache_dir) / f"bank_{split}_{key[:16]}.pt"
        if cache_file.is_file():
            try:
                cached = torch.load(cache_file, map_location="cpu", weights_only=True)
                if cached.get("key") == key and cached["table"].shape == (len(sentences), encoder.hidden_size):
                    return cached["table"], {t: list(v) for t, v in cached["index"].items()}
            except (OSError, RuntimeError, KeyError, AttributeError, EOFError):
                pass  # unreadable cache: recompute and overwrite it below

    table = encoder.embed(sentences)  # (N, hidden)
    if cache_file is not None:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache_file.with_suffix(".tmp")
        torch.save({"key": key, "table": table, "index": index, "sentences": sentences}, tmp)
        tmp.replace(cache_file)
    return table, index
