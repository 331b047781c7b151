"""A release folder: what a trained checkpoint becomes to be shared, and how it is read back.

``config.json`` (the ``ModelConfig``, the tasks, the identity of the weights and of the instruction
encoder, the classifier's settings), ``model.safetensors`` (the restoration network),
``text_encoder/`` (the instruction encoder in Hugging Face format with its task head and label
map, TextPromptIR Sec. 3.1), ``task_embeddings.safetensors`` (each task's default-instruction
embedding), ``classifier.safetensors`` (the degradation classifier, where the checkpoint has one),
``README.md`` (the model card) and ``SHA256SUMS`` (a SHA-256 of every other file, as ``sha256sum -c``
reads it). No file holds a pickle: nothing in the folder can run code when it is read.

:func:`read_release` turns a folder back into the dict ``utils.checkpoint.load_checkpoint`` returns
for a ``last.pt``, so every script that reads a checkpoint for inference reads a release too.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from net.model import RELEASE_CONFIG, RELEASE_FORMAT, RELEASE_WEIGHTS, ModelConfig, build_model, first_mismatch
from utils.digest import file_sha256
from utils.errors import UserError
from utils.release.hub import download_release, looks_like_hub_id

SUMS = "SHA256SUMS"
CARD = "README.md"
ENCODER_DIR = "text_encoder"
TASK_EMBEDDINGS = "task_embeddings.safetensors"
CLASSIFIER_WEIGHTS = "classifier.safetensors"
ONNX_FILE = "model.onnx"
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".pkl", ".pickle", ".ckpt", ".npy", ".npz", ".joblib")


def write_sums(folder: Path) -> None:
    """``SHA256SUMS``: one ``<sha256>  <path>`` line per file of ``folder`` (sorted, itself excluded)."""
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name != SUMS)
    lines = [f"{file_sha256(p)}  {p.relative_to(folder).as_posix()}\n" for p in files]
    (folder / SUMS).write_text("".join(lines), encoding="utf-8")


def read_config(folder: Path) -> dict[str, Any]:
    """``config.json`` of a release; one line when it is missing, unreadable or of another project."""
    path = folder / RELEASE_CONFIG
    if not path.is_file():
        raise UserError(f"{folder}: not a release folder: {RELEASE_CONFIG} is missing; pass a folder written by "
                        "`python -m utils.release export`, or a .pt checkpoint")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise UserError(f"{path}: unreadable ({type(e).__name__}); export the release again") from None
    if not isinstance(config, dict) or config.get("format") != RELEASE_FORMAT:
        found = config.get("format") or config.get("model_type") if isinstance(config, dict) else None
        raise UserError(f"{path}: this config.json is from another project ({found or 'no format'}, not "
                        f"{RELEASE_FORMAT}); pass a TextPromptIR release folder")
    return config


def verify_sums(folder: Path) -> None:
    """Every file ``SHA256SUMS`` lists is there with that SHA-256, and no pickle file is in the folder."""
    sums = folder / SUMS
    if not sums.is_file():
        raise UserError(f"{sums}: missing file; the release cannot be checked: export it again")
    pickled = sorted(p for p in folder.rglob("*") if p.suffix.lower() in PICKLE_SUFFIXES)
    if pickled:
        raise UserError(f"{pickled[0]}: a pickle-format file in a release folder (a release holds none, and this "
                        "one may run code); delete it or use a release you trust")
    for line in sums.read_text(encoding="utf-8").splitlines():
        digest, _, name = line.strip().partition("  ")
        if not line.strip():
            continue
        path = folder / name
        if not name or Path(name).is_absolute() or ".." in Path(name).parts:
            raise UserError(f"{sums}: malformed line {line.strip()[:80]!r}; export the release again")
        if not path.is_file():
            raise UserError(f"{path}: missing file (listed in {SUMS}); download or export the release again")
        if file_sha256(path) != digest:
            raise UserError(f"{path}: SHA-256 mismatch with {SUMS}: the file was changed or truncated since the "
                            "export; download or export the release again")


def required_files(config: dict[str, Any]) -> list[str]:
    """The files a release with this config cannot be read without."""
    files = [RELEASE_WEIGHTS, SUMS]
    if config.get("text_encoder"):
        files += [f"{ENCODER_DIR}/{name}" for name in ("config.json", "model.safetensors", "head.safetensors",
                                                        "labels.json")]
        files.append(TASK_EMBEDDINGS)
    if config.get("classifier"):
        files.append(CLASSIFIER_WEIGHTS)
    return files


def read_tensors(path: Path) -> dict[str, torch.Tensor]:
    """A safetensors file; a truncated or damaged one is one line."""
    try:
        return load_file(path)
    except (SafetensorError, OSError, ValueError) as e:
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise UserError(f"{path}: not a readable safetensors file, truncated or damaged ({reason[:120]}); "
                        "download or export the release again") from None


def release_weights(folder: Path, config: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The network's weights as float32, checked against the network ``config.json`` describes."""
    try:
        model_config = ModelConfig.from_dict(config.get("model") or {})
    except (TypeError, ValueError) as e:
        raise UserError(f"{folder / RELEASE_CONFIG}: its model settings do not describe a TextPromptIR ({e}); "
                        "export the release again") from None
    state = {k: v.float() if v.is_floating_point() else v
             for k, v in read_tensors(folder / RELEASE_WEIGHTS).items()}
    mismatch = first_mismatch(build_model(model_config, impl="reference"), state)
    if mismatch:
        raise UserError(f"{folder / RELEASE_WEIGHTS}: its tensors do not fit the network {RELEASE_CONFIG} describes "
                        f"(first: {mismatch}); export the release again")
    return state


def classifier_record(folder: Path, settings: dict[str, Any]) -> dict[str, Any]:
    """The classifier as a checkpoint stores it (``utils.checkpoint.load_classifier`` reads it)."""
    return {**settings, "state": read_tensors(folder / CLASSIFIER_WEIGHTS)}


def read_release(source: str | Path) -> dict[str, Any]:
    """A release folder (or Hub id) as the dict ``load_checkpoint`` returns for a ``last.pt`` (less its
    ``format``, which ``load_checkpoint`` adds): the weights in float32, the config, the tasks as
    ``options["de_type"]``, the encoder folder inside the release, the classifier. Every file is checked against ``SHA256SUMS`` first; each problem is one line."""
    folder = Path(source)
    if not folder.is_dir() and looks_like_hub_id(source):
        folder = download_release(str(source))
    config = read_config(folder)
    for name in required_files(config):
        if not (folder / name).is_file():
            raise UserError(f"{folder / name}: missing file; download or export the release again")
    verify_sums(folder)
    ckpt: dict[str, Any] = {"model": release_weights(folder, config), "config": config["model"],
                            "options": {"de_type": list(config.get("tasks") or [])}, "release": config}
    if config.get("text_encoder"):
        ckpt["text_encoder"] = {**config["text_encoder"], "dir": str((folder / ENCODER_DIR).resolve())}
    if config.get("classifier"):
        ckpt["classifier"] = classifier_record(folder, config["classifier"])
    return ckpt


def is_release(source: str | Path) -> bool:
    """True for a folder (read as a release: anything else is refused in one line) or a Hub id."""
    path = Path(source)
    return path.is_dir() or looks_like_hub_id(source)


def replace_folder(tmp: Path, out: Path, overwrite: bool) -> None:
    """Move the finished ``tmp`` folder to ``out`` in one rename; an existing ``out`` only with
    ``overwrite`` (it is renamed away first, then deleted)."""
    old = None
    if out.exists() or out.is_symlink():
        if not overwrite:
            raise UserError(f"{out}: already exists; pass --overwrite to replace it, or another --out")
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.rename(out, old)
    os.rename(tmp, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
