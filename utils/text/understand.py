"""What a user's request asks for: the set of tasks, each task's own part of the sentence, and the
one-line refusals (off-topic, or a task the restoration checkpoint was not trained for).

The multi-label instruction head (``net/text_encoder.py``) reads "remove the rain and the noise"
as derain + denoise. A step that restores one task is conditioned on that task alone, never on the
whole compound sentence; :func:`task_clauses` finds, for each task, the clause of the request that
names it alone (or None, when the request names it only together with another task).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import torch

from net.text_encoder import InstructionEncoder, validate_instruction
from utils.errors import UserError
from utils.tasks import TASK_WORDS, TASKS, join_tasks
from utils.text.encoder_link import shorten

# Where a compound request is cut into clauses: punctuation, conjunctions and sequencing words
_JOINERS = r"(?:and then|as well as|and|then|also|plus|but|while|with|after that|afterwards)"
_CLAUSE_BREAK = re.compile(rf"\s*[,;:/&+.!?]+\s*|\s+{_JOINERS}\s+", re.IGNORECASE)
_LEADING_JOINER = re.compile(rf"^(?:{_JOINERS}(?:\s+|$))+", re.IGNORECASE)  # ", and then the noise" -> "the noise"


@dataclass
class Understanding:
    """What :func:`understand` made of one request."""

    instruction: str  # as given, whitespace normalised
    tasks: tuple[str, ...]  # the tasks asked for, TASKS order (never empty: that is refused)
    probs: dict[str, float]  # every task's probability
    # each task of ``tasks``: its clause (task_clauses) or None; a one-task request is its own clause
    clauses: dict[str, str | None]
    embedding: torch.Tensor  # (hidden,) float32, the whole request's pooled embedding
    summary: str  # '"remove the rain and the noise" -> denoise+derain (0.95, 0.97)'
    warnings: list[str] = field(default_factory=list)


def split_clauses(text: str) -> list[str]:
    """The request cut at commas, semicolons and words such as "and", "then", "also", "with";
    empty pieces dropped. One clause (the text itself) when nothing cuts it."""
    pieces = [_LEADING_JOINER.sub("", " ".join(p.split())) for p in _CLAUSE_BREAK.split(" ".join(text.split()))]
    return [p for p in pieces if p] or [" ".join(text.split())]


def task_clauses(encoder: InstructionEncoder, text: str, tasks: Iterable[str] | None = None) -> dict[str, str | None]:
    """For each task the request asks for (``tasks``, default: the encoder's reading of the whole
    request), the clause that names that task alone: of the clauses :func:`split_clauses` gives,
    those the encoder reads as exactly that one task, the likeliest of them (the first on a tie). None for a task that
    no clause names alone (e.g. "a grainy, hazy shot" cut as "a grainy" / "hazy shot" finds both,
    "a noisy hazy shot" finds neither)."""
    text = validate_instruction(text)
    wanted = encoder.task_sets([text])[0] if tasks is None else tuple(t for t in TASKS if t in set(tasks))
    clauses = split_clauses(text)
    probs = encoder.classify(clauses)  # (C, T)
    sets = [encoder.tasks_of(row) for row in probs]
    found: dict[str, str | None] = {}
    for task in wanted:
        if task not in encoder.labels:
            found[task] = None
            continue
        col = encoder.labels.index(task)
        alone = [(float(probs[i, col]), clause) for i, clause in enumerate(clauses) if sets[i] == (task,)]
        found[task] = max(alone, key=lambda pair: pair[0])[1] if alone else None  # ties: the first clause
    return found


def describe_tasks(tasks: Iterable[str]) -> str:
    """``("denoise", "derain")`` -> ``"remove noise and rain (denoise, derain)"``."""
    names = [t for t in TASKS if t in set(tasks)]
    words = [TASK_WORDS.get(t, t) for t in names]
    listed = words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]
    return f"remove {listed} ({', '.join(names)})"


def summary_line(text: str, tasks: tuple[str, ...], probs: dict[str, float]) -> str:
    """``'"remove the rain and the noise" -> denoise+derain (0.95, 0.97)'``: the request, the task
    set understood and each task's probability; ``none`` with the likeliest task when empty."""
    quoted = f"\"{shorten(text)}\""
    if not tasks:
        top = max(probs, key=probs.get)
        return f"{quoted} -> none of the tasks (likeliest: {top} {probs[top]:.2f})"
    return f"{quoted} -> {join_tasks(tasks)} ({', '.join(f'{probs[t]:.2f}' for t in tasks)})"


def untrained_tasks(source: str, known_tasks: Sequence[str], tasks: Sequence[str]) -> str | None:
    """``"<source> was trained for a, b only, not c"`` when ``tasks`` asks for a task outside
    ``known_tasks`` (what the restoration checkpoint ``source`` was trained for), else None: the
    one check before anything restores, or scores, a task."""
    unknown = [t for t in tasks if t not in known_tasks]
    if not unknown:
        return None
    known = [t for t in TASKS if t in set(known_tasks)]
    return f"{source} was trained for {', '.join(known)} only, not {', '.join(unknown)}"


def understand(encoder: InstructionEncoder, instruction: str, known_tasks: Iterable[str],
               source: str = "this checkpoint") -> Understanding:
    """Read one request: the task set, each task's clause, the embedding and a one-line summary.

    UserError (one line) when the request is empty, asks for none of the tasks (off-topic: what
    was understood, what the tool can do, how to force a task with ``--task``), or names a task
    that ``source`` (the restoration checkpoint, trained for ``known_tasks``) cannot restore.
    """
    known = tuple(t for t in TASKS if t in set(known_tasks))
    if not known:
        raise ValueError("known_tasks names none of the tasks")
    it = encoder.interpret(instruction)
    text = validate_instruction(instruction)
    summary = summary_line(text, it.tasks, it.probs)
    if not it.tasks:
        raise UserError(f"{summary}: this tool can {describe_tasks(known)}; say what is wrong with the photo "
                        f"(e.g. \"remove the {TASK_WORDS[known[0]]}\"), or force a task with --task {known[0]}")
    untrained = untrained_tasks(source, known, it.tasks)
    if untrained:
        unknown = [t for t in it.tasks if t not in known]
        raise UserError(f"{summary}, but {untrained}; ask for {'one of those' if len(known) > 1 else known[0]}, "
                        f"or use a checkpoint trained with --de_type including {unknown[0]}")
    clauses = task_clauses(encoder, text, it.tasks) if len(it.tasks) > 1 else {it.tasks[0]: text}
    return Understanding(instruction=text, tasks=it.tasks, probs=it.probs, clauses=clauses,
                         embedding=it.embedding.float(), summary=summary, warnings=list(it.warnings))
