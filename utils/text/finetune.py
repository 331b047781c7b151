"""Stage ``text``: fine-tune the instruction encoder on the instruction bank.

TextPromptIR (arXiv 2312.06162, Sec. 3.1) fine-tunes BERT so that its instruction embedding
separates the restoration tasks.  We train encoder + multi-label task head with binary
cross-entropy per task on ``data/instructions/train.tsv`` (one-hot targets) and
``compound_train.tsv`` (multi-hot: "remove the rain and the noise" is derain + denoise), and teach
it to answer off-topic sentences (``unrelated.txt``) with no task at all (all-zero targets), which
is what lets the scripts refuse them.  Each sentence is augmented on the fly (casing, punctuation,
small typos, word drops, polite wrappers).  Runs in a few minutes on two CPU cores;
deterministic for a given seed.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import random
import tempfile
import time
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

from net.text_encoder import META_FILE, TASK_THRESHOLD, InstructionEncoder, default_encoder_path
from utils.atomic import TMP_SUFFIX, new_folder
from utils.digest import file_sha256
from utils.errors import UserError
from utils.tasks import TASKS, join_tasks
from utils.text.bank import BANK_ROOT, HELDOUT_FILES, UNRELATED_VAL_FILE, load_labelled, load_unrelated
from utils.text.embeddings import EMBEDDINGS_FILE, LEGACY_EMBEDDINGS_FILE
from utils.text.encoder_link import DEPENDENTS_FILE, dependents
from utils.text.report import format_confusion, set_confusion
from utils.text.understand import read_requests

DEFAULT_EPOCHS = 12
DEFAULT_LR = 1.5e-4  # encoder, chosen on the validation files (docs/benchmarks/instructions.md)
HEAD_LR_SCALE = 30.0  # the freshly initialised head learns at HEAD_LR_SCALE * lr
WARMUP_FRACTION = 0.1
LABEL_SMOOTHING = 0.05  # targets 0/1 become 0.025/0.975
UNRELATED_WEIGHT = 2.0
FROZEN_LAYERS = 2        # the embeddings and the lowest transformer layers stay pre-trained
# The head's thresholds tried after training; the one scoring best on the validation files (exact set on
# the val requests, refusals on unrelated_val.txt, equally weighted) is kept, the one nearest 0.5 on a tie
THRESHOLD_CHOICES = tuple(round(0.3 + 0.05 * i, 2) for i in range(11))  # 0.30 ... 0.80

TYPO_RATE = 0.15  # each word of 4+ characters gets a small typo this often while training
_PREFIXES = ("please ", "can you ", "could you ", "i need to ", "hey, ", "help: ", "ok so ", "pls ")
_SUFFIXES = (" please", " thanks", " in this photo", " for me", " in my picture", " asap", " if possible")


def _typo(word: str, rng: random.Random) -> str:
    """One small typo: swap two neighbours, drop a char, or duplicate a char."""
    i = rng.randrange(len(word) - 1)
    kind = rng.randrange(3)
    if kind == 0:
        return word[:i] + word[i + 1] + word[i] + word[i + 2:]
    if kind == 1:
        return word[:i] + word[i + 1:]
    return word[:i] + word[i] + word[i:]


def augment(text: str, rng: random.Random) -> str:
    """A randomly perturbed copy of an instruction (the label does not change)."""
    words = text.split()
    if len(words) >= 4 and rng.random() < 0.2:  # word drop
        del words[rng.randrange(len(words))]
    words = [_typo(w, rng) if len(w) >= 4 and rng.random() < TYPO_RATE else w for w in words]
    out = " ".join(words)
    r = rng.random()
    if r < 0.15:
        out = rng.choice(_PREFIXES) + out
    elif r < 0.3:
        out = out.rstrip(".!?") + rng.choice(_SUFFIXES)
    r = rng.random()
    if r < 0.25:  # strip punctuation
        out = out.replace(",", "").rstrip(".!?")
    elif r < 0.45:
        out = out.rstrip(".!?") + rng.choice((".", "!", "?", "..."))
    r = rng.random()
    if r < 0.1:
        out = out.upper()
    elif r < 0.2:
        out = out.capitalize()
    elif r < 0.3:
        out = out.lower()
    return out


def text_loss(encoder: InstructionEncoder, texts: list[str], targets: torch.Tensor,
              weights: torch.Tensor | None = None, label_smoothing: float = 0.0) -> torch.Tensor:
    """Weighted mean over sentences of the head's loss. Sigmoid head: binary cross-entropy per task,
    averaged over tasks; ``targets`` (B,T) are 0/1 per task (one-hot for a single task, multi-hot
    for a compound request, all zero for an off-topic one). Softmax head (older encoders): soft-target
    cross-entropy, ``targets`` being class distributions."""
    _, logits = encoder(**encoder.tokenize(texts))
    targets = targets.to(logits.device, logits.dtype)
    if encoder.head_kind == "sigmoid":
        smoothed = targets * (1 - label_smoothing) + label_smoothing / 2
        per_item = F.binary_cross_entropy_with_logits(logits, smoothed, reduction="none").mean(1)  # (B,)
    else:
        per_item = F.cross_entropy(logits, targets, reduction="none", label_smoothing=label_smoothing)  # (B,)
    if weights is None:
        return per_item.mean()
    w = weights.to(per_item.device)
    return (per_item * w).sum() / w.sum()


def _freeze_lower(encoder: InstructionEncoder, n_layers: int) -> None:
    """Freeze the token embeddings and the lowest ``n_layers`` transformer layers.

    They keep the pre-trained meaning of words the bank never uses (better on unseen
    phrasing), and back-propagation stops above them (faster on CPU).
    """
    embeddings = getattr(encoder.model, "embeddings", None) or encoder.model.get_input_embeddings()
    embeddings.requires_grad_(False)
    layers = getattr(getattr(encoder.model, "encoder", None), "layer", None)
    if layers is not None:
        for layer in list(layers)[:n_layers]:
            layer.requires_grad_(False)


def set_accuracy(encoder: InstructionEncoder, rows: list[tuple[str, tuple[str, ...]]],
                 cache: dict[str, torch.Tensor] | None = None) -> tuple[float, list[str], list[list[int]]]:
    """Exact-set accuracy on ``(sentence, task set)`` rows as :func:`read_requests` reads them (keep
    clauses taken out), and the confusion matrix over task sets (its labels, then rows true, columns
    predicted; see :func:`utils.text.report.set_confusion`)."""
    true = [join_tasks(tasks) for _, tasks in rows]
    pred = [join_tasks(r.tasks) for r in read_requests(encoder, [text for text, _ in rows], cache)]
    labels, matrix = set_confusion(true, pred)
    return sum(a == b for a, b in zip(true, pred)) / len(true), labels, matrix


def choose_threshold(encoder: InstructionEncoder, val_rows: list[tuple[str, tuple[str, ...]]],
                     unrelated_val: list[str]) -> tuple[float, list[dict]]:
    """Set ``encoder.threshold`` to the one of THRESHOLD_CHOICES that scores best on validation data
    only: the mean of the exact-set accuracy on ``val_rows`` and the refusal rate on ``unrelated_val``
    (the nearest to 0.5 on a tie). Returns it and every choice's scores."""
    cache: dict[str, torch.Tensor] = {}
    scores = []
    for threshold in THRESHOLD_CHOICES:
        encoder.threshold = threshold
        accuracy = set_accuracy(encoder, val_rows, cache)[0]
        refused = (sum(not r.tasks for r in read_requests(encoder, unrelated_val, cache)) / len(unrelated_val)
                   if unrelated_val else float("nan"))
        scores.append({"threshold": threshold, "val_accuracy": accuracy, "unrelated_refused": refused})
    best = max(scores, key=lambda s: ((s["val_accuracy"] + (s["unrelated_refused"] if unrelated_val else 1)) / 2,
                                      -abs(s["threshold"] - TASK_THRESHOLD)))
    encoder.threshold = best["threshold"]
    return best["threshold"], scores


def training_key(base: str | None, settings: dict, bank_root: str | Path) -> str:
    """A hash of everything the fine-tuned encoder depends on: the base model (its files when it
    is a local folder), the instruction bank and the training settings. Training is seeded, so
    the same key gives the same encoder."""
    source = Path(base) if base else Path(default_encoder_path())
    files = sorted(p for p in source.rglob("*") if p.is_file()) if source.is_dir() else []
    bank = sorted(p for p in Path(bank_root).iterdir() if p.is_file() and p.name not in HELDOUT_FILES
                  ) if Path(bank_root).is_dir() else []
    payload = {"base": str(base or "packaged"), "settings": settings,
               "base_files": {p.relative_to(source).as_posix(): file_sha256(p) for p in files},
               "bank": {p.name: file_sha256(p) for p in bank}}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _reusable(out: Path, key: str) -> dict | None:
    """The stored results of the encoder in ``out`` if it was trained with the same key."""
    try:
        meta = json.loads((out / META_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return meta.get("training") if (meta.get("training") or {}).get("key") == key else None


def task_targets(tasks: tuple[str, ...]) -> torch.Tensor:
    """(T,) 0/1 per task of TASKS: one-hot for one task, multi-hot for a set, all zero for none."""
    return torch.tensor([float(t in tasks) for t in TASKS])


def training_items(rows: list[tuple[str, tuple[str, ...]]], unrelated: list[str]
                   ) -> list[tuple[str, torch.Tensor, float]]:
    """(sentence, targets, weight) for the head: each labelled row's task set, and all-zero targets
    (weight UNRELATED_WEIGHT) for each off-topic sentence."""
    items = [(sentence, task_targets(tasks), 1.0) for sentence, tasks in rows]
    return items + [(sentence, task_targets(()), UNRELATED_WEIGHT) for sentence in unrelated]


def _optimizer(encoder: InstructionEncoder, lr: float, total_steps: int):
    """AdamW over the unfrozen layers (the head at HEAD_LR_SCALE x lr), linear warm-up then decay."""
    head_params = list(encoder.head.parameters())
    _freeze_lower(encoder, FROZEN_LAYERS)
    body_params = [p for p in encoder.model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW([{"params": body_params, "lr": lr},
                                   {"params": head_params, "lr": lr * HEAD_LR_SCALE}], weight_decay=0.01)
    warmup = max(1, int(WARMUP_FRACTION * total_steps))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min((s + 1) / warmup, max(0.0, (total_steps - s) / max(1, total_steps - warmup))))
    return optimizer, scheduler


def _train(encoder: InstructionEncoder, items: list, val_rows: list, epochs: int, batch_size: int,
           lr: float, seed: int, max_steps: int | None, eval_every: int, log: Callable[[str], None]) -> dict:
    """The fine-tuning loop; returns ``train_loss`` (mean per epoch) and ``val_history``."""
    start = time.time()
    rng = random.Random(seed)
    g = torch.Generator().manual_seed(seed)
    steps_per_epoch = math.ceil(len(items) / batch_size)
    total_steps = steps_per_epoch * epochs if max_steps is None else min(max_steps, steps_per_epoch * epochs)
    optimizer, scheduler = _optimizer(encoder, lr, total_steps)
    train_loss: list[float] = []
    val_history: list[dict] = []
    step = 0
    for epoch in range(1, epochs + 1):
        order = torch.randperm(len(items), generator=g).tolist()
        losses = []
        for i in range(0, len(order), batch_size):
            if step >= total_steps:
                break
            batch = [items[j] for j in order[i:i + batch_size]]
            loss = text_loss(encoder, [augment(text, rng) for text, _, _ in batch],
                             torch.stack([target for _, target, _ in batch]),
                             torch.tensor([weight for _, _, weight in batch]), LABEL_SMOOTHING)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(encoder.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            losses.append(loss.item())
            step += 1
        if losses:
            train_loss.append(sum(losses) / len(losses))
        last = epoch == epochs or step >= total_steps
        if last or epoch % eval_every == 0:
            acc, _, _ = set_accuracy(encoder, val_rows)
            val_history.append({"epoch": epoch, "accuracy": acc})
            log(f"epoch {epoch}/{epochs}: train loss {train_loss[-1]:.4f}, val accuracy {acc:.3f} "
                f"({time.time() - start:.0f}s)")
        if last:
            break
    return {"train_loss": train_loss, "val_history": val_history}


def _saved_here(folder: Path) -> bool:
    """True when ``folder`` holds an encoder this project saved: its ``labels.json`` label map."""
    try:
        meta = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and isinstance(meta.get("labels"), list) and "pooling" in meta


def foreign_files(folder: Path) -> list[Path]:
    """The files of ``folder`` that the text stage would replace but this project did not write:
    none for a missing or empty folder, an encoder it saved, or a copy holding only what training
    adds beside one (``embeddings.pt``, the record of dependent checkpoints)."""
    if not folder.is_dir() or _saved_here(folder):
        return []
    ours = {EMBEDDINGS_FILE, LEGACY_EMBEDDINGS_FILE, Path(EMBEDDINGS_FILE).with_suffix(".tmp").name,
            DEPENDENTS_FILE, DEPENDENTS_FILE + ".tmp"}  # and the temporary files utils.atomic writes them through
    temporary = tuple(f"{name}." for name in (EMBEDDINGS_FILE, DEPENDENTS_FILE))
    return sorted(p for p in folder.iterdir()
                  if p.name not in ours and not (p.name.startswith(temporary) and p.name.endswith(TMP_SUFFIX)))


def _reuse_or_refuse(out: Path, key: str, overwrite: bool, log: Callable[[str], None]) -> dict | None:
    """The stored results when ``out`` holds an encoder trained with ``key``; a UserError when the
    folder holds files this project did not write (someone's own model), or an encoder that
    restoration checkpoints depend on (both unless ``overwrite``)."""
    stored = _reusable(out, key)
    if stored is not None:
        log(f"text stage: the instruction encoder in {out} was trained from the same base, bank and settings; "
            f"reusing it (val accuracy {stored['val_accuracy']:.3f})")
        return stored
    foreign = foreign_files(out)
    if foreign and not overwrite:
        shown = ", ".join(p.name for p in foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        raise UserError(f"{out}: holds files this project did not write ({shown}), perhaps a model of your own; "
                        "write the fine-tuned encoder to another folder with --text_ckpt DIR, or pass --overwrite "
                        "to replace them")
    users = dependents(out)
    if users and not overwrite:
        raise UserError(f"{out}: {users[0]}{f' and {len(users) - 1} more' if len(users) > 1 else ''} "
                        "were trained with this instruction encoder and would stop working if it were "
                        "re-trained; write the new one elsewhere with --text_ckpt DIR, or pass --overwrite")
    return None


def save_whole(encoder: InstructionEncoder, out: Path, training: dict) -> None:
    """Save ``encoder`` into ``out`` whole or not at all: written into a temporary sibling folder,
    then renamed into place, replacing the folder (the previous encoder, whose embeddings and record
    of dependents go with it). Files of the user's own there (kept only under ``--overwrite``) stay:
    the encoder's files are then moved in one by one."""
    if not foreign_files(out):
        with new_folder(out, replace=True) as tmp:
            encoder.save(tmp, training=training)
        return
    with tempfile.TemporaryDirectory(prefix=out.name + ".", suffix=TMP_SUFFIX, dir=out.parent) as tmp:
        encoder.save(tmp, training=training)
        for stale in (out / EMBEDDINGS_FILE, out / LEGACY_EMBEDDINGS_FILE, out / DEPENDENTS_FILE):
            stale.unlink(missing_ok=True)
        for f in Path(tmp).iterdir():
            os.replace(f, out / f.name)


def finetune_text_encoder(base: str | None, out_dir: str | Path, epochs: int = DEFAULT_EPOCHS,
                          lr: float = DEFAULT_LR, batch_size: int = 32, pooling: str = "mean", seed: int = 0,
                          bank_root: str | Path = BANK_ROOT, log: Callable[[str], None] = print,
                          eval_every: int = 2, max_steps: int | None = None, overwrite: bool = False) -> dict:
    """Fine-tune encoder + head on the train bank, report on the val bank, save to ``out_dir``.

    ``base``: a local BERT folder or hub id (None = the packaged MiniLM).  ``max_steps`` caps
    the optimiser steps (for smoke tests).  An encoder already in ``out_dir`` that was trained
    from the same base, bank and settings is reused as it is (``reused`` is then True). One
    trained otherwise is replaced only when no restoration checkpoint depends on it, or with
    ``overwrite``. Returns ``val_accuracy`` (exact task set, val.tsv and compound_val.tsv),
    ``confusion`` (list of rows) over the task sets ``confusion_labels``, ``train_loss`` (mean per
    epoch), ``val_history``, ``unrelated_max_prob`` (largest task probability over unrelated.txt),
    ``seconds``, ``out_dir`` and ``reused``.
    """
    if epochs < 1 or batch_size < 1 or lr <= 0:
        raise UserError(f"text fine-tuning needs epochs >= 1, batch size >= 1 and lr > 0 "
                        f"(got {epochs}, {batch_size}, {lr})")
    out = Path(out_dir)
    if base is not None and Path(base).exists() and Path(base).resolve() == out.resolve():
        raise UserError(f"{out}: the output folder is the base encoder itself; write the fine-tuned "
                        "encoder to another folder (--text_ckpt)")
    settings = dict(epochs=epochs, lr=lr, batch_size=batch_size, pooling=pooling, seed=seed, max_steps=max_steps,
                    frozen=FROZEN_LAYERS, head_lr=HEAD_LR_SCALE, smoothing=LABEL_SMOOTHING, unrelated=UNRELATED_WEIGHT,
                    thresholds=THRESHOLD_CHOICES, typos=TYPO_RATE)
    key = training_key(base, settings, bank_root)
    stored = _reuse_or_refuse(out, key, overwrite, log)
    if stored is not None:
        return {**stored, "out_dir": str(out_dir), "reused": True}
    start = time.time()
    torch.manual_seed(seed)
    train_rows, val_rows = load_labelled("train", bank_root), load_labelled("val", bank_root)
    unrelated = load_unrelated(bank_root)
    unrelated_val = load_unrelated(bank_root, UNRELATED_VAL_FILE) if (Path(bank_root) / UNRELATED_VAL_FILE).is_file() else []
    encoder = InstructionEncoder(base, pooling=pooling).train()
    items = training_items(train_rows, unrelated)
    n_compound = sum(len(tasks) > 1 for _, tasks in train_rows)
    log(f"text stage: fine-tuning {encoder.encoder_id} ({pooling} pooling) on "
        f"{len(train_rows) - n_compound} instructions + {n_compound} compound + {len(unrelated)} unrelated, "
        f"{epochs} epochs x {math.ceil(len(items) / batch_size)} steps, lr {lr:g}")
    history = _train(encoder, items, val_rows, epochs, batch_size, lr, seed, max_steps, eval_every, log)
    threshold, threshold_scores = choose_threshold(encoder, val_rows, unrelated_val)
    log(f"threshold chosen on the validation files: {threshold:.2f} ("
        + ", ".join(f"{s['threshold']:.2f}: {s['val_accuracy']:.3f}/{s['unrelated_refused']:.3f}"
                    for s in threshold_scores) + " as val exact set / unrelated_val refused)")
    acc, labels, confusion = set_accuracy(encoder, val_rows)
    unrelated_max = float(encoder.classify(unrelated).max(1).values.max()) if unrelated else float("nan")
    log("validation confusion matrix (task sets):\n" + format_confusion(confusion, labels))
    log(f"unrelated sentences: largest task probability {unrelated_max:.2f} (below {threshold:.2f} means refused)")
    seconds = time.time() - start
    result = {"val_accuracy": acc, "confusion": confusion, "confusion_labels": labels, **history,
              "unrelated_max_prob": unrelated_max, "threshold": threshold, "threshold_scores": threshold_scores,
              "seconds": seconds}
    save_whole(encoder, out, {"key": key, **result})
    log(f"saved the instruction encoder to {out_dir} (val accuracy {acc:.3f}, {seconds:.0f}s)")
    return {**result, "out_dir": str(out_dir), "reused": False}
