"""The embeddings of the instruction bank, computed once by the frozen, fine-tuned encoder and
cached beside it (TextPromptIR Sec. 3.1: the encoder is fine-tuned, then frozen for restoration).

``<encoder folder>/embeddings.pt`` holds everything restoration training takes from the encoder: the
train bank's embeddings (``table``, one row per sentence) and the rows of each task (``rows``), each
task's default-instruction embedding (``defaults``) and the identity of the encoder and the bank.
A Dataset only hands out row indices into the table. Encoder folders written before this file had
its name keep theirs (``prompts.pt``), which is read the same way.
"""
from __future__ import annotations

import pickle
from pathlib import Path

import torch

from net.text_encoder import InstructionEncoder, has_encoder_weights
from utils.atomic import write_file
from utils.errors import UserError, not_weights_error
from utils.tasks import TASKS
from utils.text.bank import BANK_ROOT, DEFAULT_INSTRUCTIONS, bank_digest, load_bank

EMBEDDINGS_FILE = "embeddings.pt"
LEGACY_EMBEDDINGS_FILE = "prompts.pt"  # the same record, as older encoder folders name it


def embeddings_path(folder: str | Path) -> Path:
    """The cache file of an encoder folder: ``embeddings.pt``, or an older folder's ``prompts.pt``."""
    folder = Path(folder)
    legacy = folder / LEGACY_EMBEDDINGS_FILE
    return legacy if legacy.is_file() and not (folder / EMBEDDINGS_FILE).is_file() else folder / EMBEDDINGS_FILE


def bank_embeddings(encoder: InstructionEncoder, split: str = "train",
                    root: str | Path = BANK_ROOT) -> tuple[torch.Tensor, dict[str, list[int]]]:
    """Embeddings of every bank sentence and, per task, their row indices: ``table (N, hidden)
    float32`` (rows grouped by task in TASKS order, for the tasks the bank has, file order within a task) and
    ``{task: [row, ...]}``."""
    bank = load_bank(split, root)
    index: dict[str, list[int]] = {}
    row = 0
    for t, sentences in bank.items():  # TASKS order, the tasks the bank has
        index[t] = list(range(row, row + len(sentences)))
        row += len(sentences)
    return encoder.embed([s for sentences in bank.values() for s in sentences]), index


def write_embeddings(encoder: InstructionEncoder, folder: str | Path, root: str | Path = BANK_ROOT) -> dict:
    """Store in ``folder/embeddings.pt`` everything restoration training takes from the frozen encoder:
    the train bank's embeddings and rows per task, each task's default instruction embedding,
    and the encoder's fingerprint."""
    table, rows = bank_embeddings(encoder, "train", root)
    defaults = encoder.embed([DEFAULT_INSTRUCTIONS[t] for t in TASKS])
    cache = {"table": table, "rows": rows, "defaults": dict(zip(TASKS, defaults)),
             "fingerprint": encoder.fingerprint(), "bank_sha256": bank_digest("train", root),
             "hidden_size": encoder.hidden_size, "encoder_id": encoder.encoder_id}
    path = Path(folder) / EMBEDDINGS_FILE
    write_file(path, lambda f: torch.save(cache, f), replace=True)  # made again from the encoder: replaced
    return cache


def read_embeddings(folder: str | Path) -> dict | None:
    """``folder/embeddings.pt`` as written by :func:`write_embeddings`, or None if absent or unreadable
    (it is then made again); a UserError if it holds Python objects other than tensors."""
    path = embeddings_path(folder)
    try:
        cache = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise not_weights_error(path, "instruction-encoder file", "delete it (training makes it again from the "
                                "encoder) or copy the encoder folder again from where it was trained") from None
    except (OSError, RuntimeError, EOFError, ValueError):
        return None
    return cache if isinstance(cache, dict) and {"table", "rows", "fingerprint"} <= set(cache) else None


def training_embeddings(folder: str | Path, root: str | Path = BANK_ROOT) -> dict:
    """The cache of :func:`write_embeddings` for the encoder in ``folder`` and the bank in ``root``:
    read from ``embeddings.pt`` when it matches both, else computed and stored. A folder holding only
    ``embeddings.pt`` (no encoder weights, e.g. copied to a training machine) is used as it is,
    provided the bank has not changed."""
    folder = Path(folder)
    stored = read_embeddings(folder)
    digest = bank_digest("train", root)
    if not has_encoder_weights(folder):
        if stored is None:
            InstructionEncoder.load(folder)  # raises the one-line "run --stage text" error
        if stored["bank_sha256"] != digest:
            raise UserError(f"{embeddings_path(folder)}: made for another instruction bank than {root}, and the "
                            "encoder's weights are not here to redo it; copy the whole encoder folder")
        return stored
    encoder = InstructionEncoder.load(folder)
    if stored and stored["bank_sha256"] == digest and stored["fingerprint"] == encoder.fingerprint():
        return stored
    return write_embeddings(encoder, folder, root)
