"""Export a training checkpoint (``last.pt``) as a release folder (layout: ``utils.release.folder``).

The folder is written into a temporary sibling and renamed into place when complete, so an
interrupted export leaves nothing half-written under ``--out``.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from safetensors.torch import save_file

from net.degradation_classifier import THRESHOLD
from net.model import RELEASE_CONFIG, RELEASE_FORMAT, RELEASE_WEIGHTS, TextPromptIR
from net.text_encoder import BORDERLINE
from utils.checkpoint import load_model
from utils.digest import weights_sha256
from utils.errors import UserError
from utils.eval.results import FORMAT, project_version, same_checkpoint
from utils.release.card import model_card
from utils.release.folder import (
    CARD,
    CLASSIFIER_WEIGHTS,
    DTYPES,
    ENCODER_DIR,
    TASK_EMBEDDINGS,
    replace_folder,
    write_sums,
)
from utils.release.onnx_export import write_onnx
from utils.text.bank import DEFAULT_INSTRUCTIONS
from utils.text.encoder_link import checkpoint_tasks, encoder_for_checkpoint


def checked_results(path: str | Path | None, ckpt_path: str | Path, identity: str) -> dict[str, Any] | None:
    """The results file of this very checkpoint (by the SHA-256 of its weights, or, for files written
    before that was recorded, of its file); another checkpoint's results are refused."""
    if path is None:
        return None
    path = Path(path)
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise UserError(f"--results {path}: unreadable ({type(e).__name__}); pass the results.json test.py "
                        "wrote for this checkpoint") from None
    if not isinstance(results, dict) or results.get("format") != FORMAT:
        raise UserError(f"--results {path}: not a results.json written by test.py")
    theirs = results.get("checkpoint") or {}
    if not same_checkpoint(theirs, ckpt_path, identity):
        raise UserError(f"--results {path}: these are the results of another checkpoint ({theirs.get('path')}), "
                        f"not of {ckpt_path}; score it with `python test.py --ckpt {ckpt_path}` and pass that file")
    return results


def write_encoder(folder: Path, ckpt_path: Path, ckpt: dict[str, Any], text_dim: int, tasks: tuple[str, ...],
                  text_ckpt: str | Path | None) -> dict[str, Any]:
    """The instruction encoder the checkpoint was trained with (checked by its fingerprint) in Hugging
    Face format under ``text_encoder/``, and each task's default-instruction embedding beside it."""
    encoder = encoder_for_checkpoint(ckpt_path, ckpt, text_dim, text_ckpt)
    encoder.save(folder / ENCODER_DIR)
    # one sentence at a time, as the runtime encodes an instruction: the very same numbers
    embeddings = {t: encoder.embed([DEFAULT_INSTRUCTIONS[t]])[0].contiguous() for t in tasks}  # (text_dim,) each
    save_file(embeddings, folder / TASK_EMBEDDINGS, metadata={t: DEFAULT_INSTRUCTIONS[t] for t in tasks})
    return {"dir": ENCODER_DIR, "fingerprint": encoder.fingerprint(), "id": encoder.encoder_id,
            "hidden_size": encoder.hidden_size, "labels": list(encoder.labels), "head": encoder.head_kind,
            "task_threshold": encoder.threshold, "borderline": BORDERLINE, "task_embeddings": TASK_EMBEDDINGS}


def write_classifier(folder: Path, record: dict[str, Any] | None) -> dict[str, Any] | None:
    """The degradation classifier's weights, and its settings for ``config.json`` (None: it has none)."""
    if record is None:
        return None
    save_file({k: v.detach().cpu().contiguous() for k, v in record["state"].items()}, folder / CLASSIFIER_WEIGHTS)
    return {**{k: v for k, v in record.items() if k != "state"}, "threshold": THRESHOLD}


def training_record(ckpt: dict[str, Any]) -> dict[str, Any]:
    """How the checkpoint was trained, from what it records (plain JSON values only)."""
    options = ckpt.get("options") or {}
    budget = ckpt.get("budget") or {}
    return {"step": ckpt.get("step"), "epoch": ckpt.get("epoch"), "trained_s": budget.get("trained_s"),
            "options": {k: v for k, v in options.items() if isinstance(v, (int, float, str, bool, type(None)))}}


def fill_release(folder: Path, ckpt_path: Path, ckpt: dict[str, Any], model: TextPromptIR, dtype: str,
                 results: dict[str, Any] | None, text_ckpt: str | Path | None) -> dict[str, Any]:
    """Write every file of the release into ``folder``; returns its ``config.json``."""
    tasks = checkpoint_tasks(ckpt)
    state = {k: (v.to(DTYPES[dtype]) if v.is_floating_point() else v).contiguous()
             for k, v in model.state_dict().items()}
    save_file(state, folder / RELEASE_WEIGHTS, metadata={"format": RELEASE_FORMAT, "dtype": dtype})
    conditioned = model.config.text_cond != "none"
    config = {"format": RELEASE_FORMAT, "model": model.config.to_dict(), "tasks": list(tasks), "dtype": dtype,
              "weights_sha256": weights_sha256(state), "source": {"name": Path(ckpt_path).name,
                                                                  "weights_sha256": weights_sha256(ckpt["model"])},
              "text_encoder": write_encoder(folder, ckpt_path, ckpt, model.config.text_dim, tasks, text_ckpt)
              if conditioned else None,
              "classifier": write_classifier(folder, ckpt.get("classifier")) if conditioned else None,
              "training": training_record(ckpt), "exported_with": project_version()}
    (folder / RELEASE_CONFIG).write_text(json.dumps(config, indent=2, default=str) + "\n", encoding="utf-8")
    (folder / CARD).write_text(model_card(config, results), encoding="utf-8")
    return config


def share_modes(folder: Path) -> None:
    """Give the folder and its files the modes of ordinary files (the temporary folder and some
    writers make them private): a release is for sharing."""
    umask = os.umask(0)
    os.umask(umask)
    for path in [folder, *folder.rglob("*")]:
        path.chmod((0o777 if path.is_dir() else 0o666) & ~umask)


def export_release(ckpt_path: str | Path, out: str | Path, results_path: str | Path | None = None,
                   dtype: str = "fp32", overwrite: bool = False, text_ckpt: str | Path | None = None,
                   onnx: bool = False) -> dict[str, Any]:
    """Write the release folder ``out`` of the checkpoint ``ckpt_path``; returns its ``config.json``."""
    ckpt_path, out = Path(ckpt_path), Path(out)
    if dtype not in DTYPES:
        raise UserError(f"--dtype {dtype}: use one of {', '.join(DTYPES)}")
    if (out.exists() or out.is_symlink()) and not overwrite:
        raise UserError(f"{out}: already exists; pass --overwrite to replace it, or another --out")
    model, ckpt = load_model(ckpt_path, impl="reference")
    results = checked_results(results_path, ckpt_path, weights_sha256(ckpt["model"]))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        config = fill_release(tmp, ckpt_path, ckpt, model.eval(), dtype, results, text_ckpt)
        if onnx:
            write_onnx(model, tmp)
        share_modes(tmp)
        write_sums(tmp)
        replace_folder(tmp, out, overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return config

