"""How well the instruction encoder reads a labelled TSV of instructions.

Backs ``python test.py --instructions FILE.tsv``: per-task accuracy, the confusion matrix,
the mistakes, and as the last line ``instruction accuracy: 0.967 (58/60)``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from net.text_encoder import InstructionEncoder
from utils.text.bank import read_instruction_tsv


def confusion_matrix(true: Sequence[str], pred: Sequence[str], labels: Sequence[str]) -> list[list[int]]:
    """``m[i][j]`` = how many items of true class ``labels[i]`` were predicted ``labels[j]``."""
    pos = {t: i for i, t in enumerate(labels)}
    m = [[0] * len(labels) for _ in labels]
    for t, p in zip(true, pred):
        m[pos[t]][pos[p]] += 1
    return m


def format_confusion(m: list[list[int]], labels: Sequence[str]) -> str:
    """The matrix as aligned text, rows = true task, columns = predicted task."""
    w = max(8, *(len(l) for l in labels)) + 1
    lines = ["true \\ predicted".ljust(18) + "".join(l.rjust(w) for l in labels)]
    for label, row in zip(labels, m):
        lines.append(label.ljust(18) + "".join(str(v).rjust(w) for v in row))
    return "\n".join(lines)


def instruction_report(tsv_path: str | Path, encoder: InstructionEncoder) -> tuple[str, float]:
    """Classify every line of ``tsv_path`` and return ``(report text, accuracy)``.

    The report lists per-task accuracy, the confusion matrix and each mistake
    (instruction, true task, predicted task, confidence); its last line is exactly
    ``instruction accuracy: A.AAA (correct/total)``.
    """
    rows = read_instruction_tsv(tsv_path)
    texts = [r[0] for r in rows]
    true = [r[1] for r in rows]
    labels = list(encoder.labels)
    probs = encoder.classify(texts)  # (N, T)
    conf, idx = probs.max(dim=1)
    pred = [labels[i] for i in idx.tolist()]
    correct = sum(t == p for t, p in zip(true, pred))
    total = len(rows)
    accuracy = correct / total

    out = [f"instructions: {tsv_path} ({total} lines), encoder: {encoder.encoder_id}", "", "per-task accuracy:"]
    for label in labels:
        n = sum(t == label for t in true)
        k = sum(t == label and p == label for t, p in zip(true, pred))
        out.append(f"  {label:<8} {k / n:.3f} ({k}/{n})" if n else f"  {label:<8} n/a (0/0)")
    out += ["", "confusion matrix:", format_confusion(confusion_matrix(true, pred, labels), labels), ""]
    mistakes = [(x, t, p, c) for x, t, p, c in zip(texts, true, pred, conf.tolist()) if t != p]
    out.append(f"mistakes: {len(mistakes)}")
    for x, t, p, c in mistakes:
        out.append(f"  {x!r}: true {t}, predicted {p} (confidence {c:.2f})")
    out.append(f"instruction accuracy: {accuracy:.3f} ({correct}/{total})")
    return "\n".join(out), accuracy
