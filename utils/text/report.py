"""How well the instruction encoder reads labelled instructions, and how often it refuses
off-topic ones.

Backs ``python test.py --instructions FILE.tsv [--unrelated FILE.txt]``: exact-set accuracy per
true task set, the confusion matrix over task sets (for a file of single-task rows, the
five-class confusion, plus a column for any other set predicted, e.g. ``none``), how many valid
requests were accepted, the refusal rate on the off-topic file, the mistakes, and as the last line
``instruction accuracy: 0.967 (58/60)`` (or, with ``--unrelated`` alone,
``unrelated refused: 0.951 (77/81)``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from net.text_encoder import InstructionEncoder
from utils.errors import UserError
from utils.tasks import TASKS, join_tasks
from utils.text.bank import read_instruction_tsv, read_unrelated, task_set
from utils.text.understand import read_requests


def confusion_matrix(true: Sequence[str], pred: Sequence[str], labels: Sequence[str]) -> list[list[int]]:
    """``m[i][j]`` = how many items of true class ``labels[i]`` were predicted ``labels[j]``."""
    pos = {t: i for i, t in enumerate(labels)}
    m = [[0] * len(labels) for _ in labels]
    for t, p in zip(true, pred):
        m[pos[t]][pos[p]] += 1
    return m


def _set_order(label: str) -> tuple:
    """Single tasks first (TASKS order), then pairs, triples...; ``none`` last."""
    if label == "none":
        return (len(TASKS) + 1,)
    tasks = task_set(label)
    return (len(tasks), *[TASKS.index(t) for t in tasks])


def set_confusion(true: Sequence[str], pred: Sequence[str]) -> tuple[list[str], list[list[int]]]:
    """Confusion over task-set labels (``set_label`` form): ``labels`` are the true sets (single
    tasks first, in TASKS order) followed by any set only predicted; the matrix has a row per true
    set and a column per label, so its diagonal counts exact matches."""
    rows = sorted(set(true), key=_set_order)
    labels = rows + sorted(set(pred) - set(rows), key=_set_order)
    return labels, confusion_matrix(true, pred, labels)[:len(rows)]


def format_confusion(m: list[list[int]], labels: Sequence[str]) -> str:
    """The matrix as aligned text: rows = true, labelled ``labels[:len(m)]``; columns = predicted."""
    w = max(8, *(len(l) for l in labels)) + 1
    lines = ["true \\ predicted".ljust(18) + "".join(l.rjust(w) for l in labels)]
    for label, row in zip(labels, m):
        lines.append(label.ljust(max(18, w)) + "".join(str(v).rjust(w) for v in row))
    return "\n".join(lines)


def _rate(k: int, n: int) -> str:
    return f"{k / n:.3f} ({k}/{n})" if n else "n/a (0/0)"


def _probs_text(probs: Sequence[float], labels: Sequence[str]) -> str:
    return ", ".join(f"{t} {p:.2f}" for t, p in zip(labels, probs) if p >= 0.05) or "every task < 0.05"


def instruction_report(tsv_path: str | Path | None, encoder: InstructionEncoder,
                       unrelated_path: str | Path | None = None) -> tuple[str, float]:
    """Classify every line of ``tsv_path`` (rows ``instruction<TAB>task``, task one name or a set
    ``a+b``) and of ``unrelated_path`` (plain text, every line should be refused); return
    ``(report text, score)``: the exact-set accuracy of the TSV, or the refusal rate when only
    the unrelated file is given. The last line is ``instruction accuracy: A.AAA (correct/total)``
    (``unrelated refused: ...`` without a TSV)."""
    if tsv_path is None and unrelated_path is None:
        raise ValueError("give a TSV of instructions, a file of unrelated requests, or both")
    labels = list(encoder.labels)
    threshold = f", threshold {encoder.threshold:.2f}" if encoder.head_kind == "sigmoid" else ""
    out = [f"encoder: {encoder.encoder_id} ({encoder.head_kind} head over {', '.join(labels)}{threshold})"]
    accuracy = None
    if tsv_path is not None:
        rows = read_instruction_tsv(tsv_path)
        texts, true = [r[0] for r in rows], [r[1] for r in rows]
        readings = read_requests(encoder, texts)  # keep clauses taken into account
        pred = [join_tasks(r.tasks) for r in readings]
        probs = [list(r.probs.values()) for r in readings]
        correct = sum(t == p for t, p in zip(true, pred))
        accuracy = correct / len(rows)
        n_compound = sum("+" in t for t in true)
        out += [f"instructions: {tsv_path} ({len(rows)} lines: {len(rows) - n_compound} single-task, "
                f"{n_compound} compound)", "", "accuracy per true task set (exact set):"]
        set_labels, matrix = set_confusion(true, pred)
        for label in set_labels[:len(matrix)]:
            n = sum(t == label for t in true)
            out.append(f"  {label:<8} {_rate(sum(t == label and p == label for t, p in zip(true, pred)), n)}")
        accepted = sum(p != "none" for p in pred)
        out += ["", "confusion matrix over task sets:", format_confusion(matrix, set_labels), "",
                f"valid requests accepted (some task understood): {_rate(accepted, len(rows))}"]
        mistakes = [(x, t, p, pr) for x, t, p, pr in zip(texts, true, pred, probs) if t != p]
    if unrelated_path is not None:
        unrelated = read_unrelated(unrelated_path)
        if not unrelated:
            raise UserError(f"{unrelated_path}: no requests in it; put one off-topic request per line")
        u_readings = read_requests(encoder, unrelated)
        u_pred = [join_tasks(r.tasks) for r in u_readings]
        u_probs = [list(r.probs.values()) for r in u_readings]
        refused = sum(p == "none" for p in u_pred)
        if encoder.head_kind == "softmax":
            out.append("note: this encoder has a softmax head (written before task sets), so it reads every "
                       "request as some task and refuses none")
        out += ["", f"unrelated requests: {unrelated_path} ({len(unrelated)} lines)"]
        for x, p, pr in zip(unrelated, u_pred, u_probs):
            if p != "none":
                out.append(f"  accepted {x!r} as {p} ({_probs_text(pr, labels)})")
        out.append(f"unrelated refused: {_rate(refused, len(unrelated))}")
        if accuracy is None:
            accuracy = refused / len(unrelated)
            return "\n".join(out), accuracy
    out.append(f"mistakes: {len(mistakes)}")
    for x, t, p, pr in mistakes:
        out.append(f"  {x!r}: true {t}, predicted {p} ({_probs_text(pr, labels)})")
    out.append(f"instruction accuracy: {_rate(correct, len(rows))}")
    return "\n".join(out), accuracy
