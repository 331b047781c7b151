"""What a user's request asks for: the set of tasks, each task's own part of the sentence, and the
one-line refusals (off-topic, or a task the restoration checkpoint was not trained for).

The multi-label instruction head (``net/text_encoder.py``) reads "remove the rain and the noise"
as derain + denoise. A step that restores one task is conditioned on that task alone, never on the
whole compound sentence; :func:`task_clauses` finds, for each task, the clause of the request that
names it alone (or None, when the request names it only together with another task).

A clause that asks to keep something ("keep the rain", "don't touch the haze", "no denoising";
``utils.text.clauses``) takes the tasks it names out of the set: the head reads the rest of the
request for what to do, and the keep clause, without its cue words, for what to leave alone.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Sequence

import torch

from net.text_encoder import InstructionEncoder, validate_instruction
from utils.errors import UserError
from utils.tasks import TASK_WORDS, TASKS, join_tasks
from utils.text.clauses import Clause, clauses, split_clauses
from utils.text.encoder_link import shorten

__all__ = ["Reading", "Understanding", "describe_tasks", "read_requests", "split_clauses", "summary_line",
           "task_clauses", "understand"]



@dataclass
class Understanding:
    """What :func:`understand` made of one request."""

    instruction: str  # as given, whitespace normalised
    tasks: tuple[str, ...]  # the tasks asked for, TASKS order (never empty: that is refused)
    probs: dict[str, float]  # every task's probability
    # each task of ``tasks``: its clause (task_clauses) or None; a one-task request is its own clause
    # (the part of it that asks for something, when it also asks to keep something)
    clauses: dict[str, str | None]
    embedding: torch.Tensor  # (hidden,) float32, the whole request's pooled embedding
    summary: str  # '"remove the rain and the noise" -> denoise+derain (0.95, 0.97)'
    warnings: list[str] = field(default_factory=list)


@dataclass
class Reading:
    """The task set one request asks for, keep clauses taken into account."""

    tasks: tuple[str, ...]  # to restore, TASKS order; () = none (off-topic, or only asks to keep)
    probs: dict[str, float]  # each task's probability in the part of the request that asks for something
    kept: tuple[str, ...] = ()  # tasks a keep clause names, TASKS order
    asking: str = ""  # the part of the request that asks for something (the request without its keep clauses)


def _asking_part(parts: list[Clause]) -> str:
    """The request without its keep clauses, each remaining clause after its own joiner."""
    rest = [c for c in parts if not c.keep]
    return "".join((c.joiner if i else "") + c.text for i, c in enumerate(rest)).strip(" ,;:")


def read_requests(encoder: InstructionEncoder, texts: list[str],
                  cache: dict[str, torch.Tensor] | None = None) -> list[Reading]:
    """What each request asks for: the head's task set of the request without its keep clauses,
    less every task a keep clause names ("remove the noise but keep the rain" -> denoise). A
    request with no keep clause is read whole, as the head reads it; a softmax head (older
    encoders, one task a request) always reads the whole request. ``cache`` (sentence -> (T,)
    probabilities) spares reading a sentence twice, e.g. while trying thresholds."""
    texts = [validate_instruction(t) for t in texts]
    split = [clauses(t) if encoder.head_kind == "sigmoid" else [] for t in texts]
    queries: list[str] = []  # per request: its asking part, then each keep clause's named words
    plan: list[tuple[int, list[int]]] = []
    for text, parts in zip(texts, split):
        keeps = [c.named() for c in parts if c.keep]
        asking = _asking_part(parts) if keeps else text
        plan.append((len(queries), list(range(len(queries) + 1, len(queries) + 1 + len(keeps)))))
        queries += [asking or text] + [k or "nothing" for k in keeps]
    cache = {} if cache is None else cache
    missing = list(dict.fromkeys(q for q in queries if q not in cache))
    if missing:
        cache.update(zip(missing, encoder.classify(missing)))  # (M, T) rows
    probs = [cache[q] for q in queries]
    readings = []
    for text, parts, (ask, keep_rows) in zip(texts, split, plan):
        kept = {t for i in keep_rows for t in encoder.tasks_of(probs[i])}
        asking = _asking_part(parts) if keep_rows else text
        wanted = encoder.tasks_of(probs[ask]) if asking else ()
        readings.append(Reading(tasks=tuple(t for t in wanted if t not in kept),
                                probs={t: float(p) for t, p in zip(encoder.labels, probs[ask])},
                                kept=tuple(t for t in TASKS if t in kept), asking=asking))
    return readings


def task_clauses(encoder: InstructionEncoder, text: str, tasks: Iterable[str] | None = None) -> dict[str, str | None]:
    """For each task the request asks for (``tasks``, default: :func:`read_requests`' reading of the
    request), the clause that names that task alone: of the clauses that do not ask to keep
    something, those the encoder reads as exactly that one task, the likeliest of them (the first on
    a tie). None for a task that no such clause names alone (e.g. "a grainy, hazy shot" cut as "a
    grainy" / "hazy shot" finds both, "a noisy hazy shot" finds neither). A task a keep clause
    names is never asked for ("remove the noise but keep the rain" -> denoise only)."""
    text = validate_instruction(text)
    reading = read_requests(encoder, [text])[0]
    wanted = reading.tasks if tasks is None else tuple(t for t in TASKS if t in set(tasks) and t not in reading.kept)
    asking = [c.text for c in clauses(text) if not c.keep] if encoder.head_kind == "sigmoid" else split_clauses(text)
    if not asking:
        return {task: None for task in wanted}
    probs = encoder.classify(asking)  # (C, T)
    sets = [encoder.tasks_of(row) for row in probs]
    found: dict[str, str | None] = {}
    for task in wanted:
        if task not in encoder.labels:
            found[task] = None
            continue
        col = encoder.labels.index(task)
        alone = [(float(probs[i, col]), clause) for i, clause in enumerate(asking) if sets[i] == (task,)]
        found[task] = max(alone, key=lambda pair: pair[0])[1] if alone else None  # ties: the first clause
    return found


def describe_tasks(tasks: Iterable[str]) -> str:
    """``("denoise", "derain")`` -> ``"remove noise and rain (denoise, derain)"``."""
    names = [t for t in TASKS if t in set(tasks)]
    words = [TASK_WORDS.get(t, t) for t in names]
    listed = words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]
    return f"remove {listed} ({', '.join(names)})"


def summary_line(text: str, tasks: tuple[str, ...], probs: dict[str, float], known: Iterable[str] | None = None,
                 kept: tuple[str, ...] = ()) -> str:
    """``'"remove the rain and the noise" -> denoise+derain (0.95, 0.97)'``: the request, the task
    set understood and each task's probability, then the tasks it asks to keep; ``none`` with the
    likeliest of the ``known`` tasks (the checkpoint's own; default: every task read) when empty."""
    quoted = f"\"{shorten(text)}\""
    keeping = f"; keeping the {' and '.join(TASK_WORDS[t] for t in kept)}" if kept else ""
    if not tasks:
        own = [t for t in probs if known is None or t in set(known)] or list(probs)
        top = max(own, key=probs.get)
        return f"{quoted} -> none of the tasks (likeliest: {top} {probs[top]:.2f}){keeping}"
    return f"{quoted} -> {join_tasks(tasks)} ({', '.join(f'{probs[t]:.2f}' for t in tasks)}){keeping}"


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
    """Read one request: the task set (keep clauses taken out, :func:`read_requests`), each task's
    clause, the embedding and a one-line summary.

    UserError (one line) when the request is empty, asks for none of the tasks (off-topic: what
    was understood, what the tool can do, how to force a task with ``--task``), or names a task
    that ``source`` (the restoration checkpoint, trained for ``known_tasks``) cannot restore.
    """
    known = tuple(t for t in TASKS if t in set(known_tasks))
    if not known:
        raise ValueError("known_tasks names none of the tasks")
    it = encoder.interpret(instruction)
    text = validate_instruction(instruction)
    reading = read_requests(encoder, [text])[0]
    summary = summary_line(text, reading.tasks, reading.probs, known, reading.kept)
    if not reading.tasks:
        raise UserError(f"{summary}: this tool can {describe_tasks(known)}; say what is wrong with the photo "
                        f"(e.g. \"remove the {TASK_WORDS[known[0]]}\"), or force a task with --task {known[0]}")
    untrained = untrained_tasks(source, known, reading.tasks)
    if untrained:
        unknown = [t for t in reading.tasks if t not in known]
        raise UserError(f"{summary}, but {untrained}; ask for {'one of those' if len(known) > 1 else known[0]}, "
                        f"or use a checkpoint trained with --de_type including {unknown[0]}")
    if len(reading.tasks) > 1:
        task_parts = task_clauses(encoder, text, reading.tasks)
    else:  # one task: the request itself, or the part of it that asks for something
        task_parts = {reading.tasks[0]: reading.asking or text}
    warnings = [w for w in it.warnings if not any(f"asks for {t} " in w for t in reading.kept)]
    return Understanding(instruction=text, tasks=reading.tasks, probs=reading.probs, clauses=task_parts,
                         embedding=it.embedding.float(), summary=summary, warnings=warnings)
