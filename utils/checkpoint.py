"""Checkpoints as plain dicts, written atomically and read with ``weights_only=True``.

A restoration checkpoint holds ``model`` (the unwrapped state_dict), ``model_args`` (enough
to rebuild the net), ``text_encoder`` (where the fine-tuned instruction encoder lives and
which base model it came from) and, for resuming, optimizer / scheduler / scaler state,
``epoch``, ``step``, RNG states and the resolved ``options``.
"""
from __future__ import annotations

import os
import pickle
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import torch

from net.model import TextPromptIR, build_model
from utils.errors import UserError

FORMAT = "textpromptir/1"


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Write ``state`` to ``path`` atomically: a temp file in the same folder, then
    ``os.replace``, so an interrupted save never destroys the previous checkpoint."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it private; give it a normal file's mode
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save({"format": FORMAT, **state}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by train.py; every problem is a one-line UserError."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: checkpoint not found; train one with `python train.py` "
                        "(or `make demo`) or pass --ckpt with the right path")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, zipfile.BadZipFile, RuntimeError, EOFError, OSError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"{path}: not a readable PyTorch checkpoint ({first[:120]}); "
                        "pass a .pt file written by train.py") from None
    if not isinstance(ckpt, dict) or "model" not in ckpt or "model_args" not in ckpt:
        raise UserError(f"{path}: not a TextPromptIR checkpoint (no 'model'/'model_args' entries); "
                        "pass a file written by this project's train.py")
    return ckpt


def load_model(path: str | Path, map_location: str | torch.device = "cpu",
               impl: str = "fast") -> tuple[TextPromptIR, dict[str, Any]]:
    """Rebuild the net from a checkpoint's ``model_args`` and load its weights."""
    ckpt = load_checkpoint(path, map_location)
    try:
        model = build_model(ckpt["model_args"], impl=impl)
    except (TypeError, ValueError) as e:
        raise UserError(f"{path}: its model_args do not describe a TextPromptIR ({e}); "
                        "was it written by another project?") from None
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as e:
        raise UserError(f"{path}: weights do not fit the network its model_args describe "
                        f"({str(e).splitlines()[0][:120]})") from None
    return model, ckpt


def check_same_config(path: str | Path, ckpt: dict[str, Any], model_args: dict[str, Any]) -> None:
    """Refuse to resume a run whose network differs from the checkpoint's."""
    theirs = ckpt.get("model_args", {})
    diff = sorted(k for k in set(theirs) | set(model_args) if theirs.get(k) != model_args.get(k))
    if diff:
        shown = ", ".join(f"{k}: checkpoint {theirs.get(k)!r} vs now {model_args.get(k)!r}" for k in diff)
        raise UserError(f"{path}: checkpoint was trained with another network config ({shown}); "
                        "use the same --preset/model options or start a new --run")
