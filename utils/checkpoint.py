"""Checkpoints as plain dicts, written atomically and read with ``weights_only=True``.

A restoration checkpoint holds ``format``, ``model`` (the unwrapped state_dict), ``config``
(``ModelConfig.to_dict()``, enough to rebuild the net), ``text_encoder`` (where the fine-tuned
instruction encoder lives, relative to the checkpoint's folder, and the fingerprint of its
weights) and, for resuming, optimizer / scheduler state, ``epoch``, ``step``, RNG states and
the resolved ``options``; optionally ``classifier``, the degradation classifier of the blind
route (:func:`load_classifier`). Checkpoints of format 1 (``model_args`` instead of ``config``) load,
and so do release folders (``utils.release.folder``), wherever a checkpoint is read.
"""
from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from net.degradation_classifier import TRAINING_CROP, DegradationClassifier
from net.model import ModelConfig, TextPromptIR, build_model, first_mismatch
from utils.atomic import TMP_SUFFIX, write_file
from utils.errors import UserError
from utils.full_disk import naming_full_disk
from utils.release.folder import is_release, read_release

FORMAT = "textpromptir/2"
READABLE_FORMATS = ("textpromptir/1", FORMAT)


class NonFiniteWeights(UserError):
    """The weights hold NaN or inf: such a checkpoint is never written."""


def non_finite_tensors(state: dict[str, torch.Tensor]) -> list[str]:
    """Names of the floating-point tensors of a state_dict that hold NaN or inf."""
    return [name for name, t in state.items() if t.is_floating_point() and not torch.isfinite(t).all()]


def remove_stale_temps(folder: str | Path) -> list[Path]:
    """Delete the half-written ``*.pt.<random>.tmp`` files an interrupted save left in ``folder``."""
    folder = Path(folder)
    stale = [p for p in folder.glob(f"*.pt.*{TMP_SUFFIX}") if p.is_file()] if folder.is_dir() else []
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def tensor_bytes(state: Any) -> int:
    """The bytes of the tensors in a nested state (a checkpoint's size on disk, give or take a little)."""
    if isinstance(state, torch.Tensor):
        return state.numel() * state.element_size()
    if isinstance(state, dict):
        return sum(tensor_bytes(v) for v in state.values())
    if isinstance(state, (list, tuple)):
        return sum(tensor_bytes(v) for v in state)
    return 0


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Write ``state`` to ``path`` atomically (``utils.atomic``: a temp file in the same folder, then
    ``os.replace``), so an interrupted save never destroys the previous checkpoint. Refuses (NonFiniteWeights)
    weights with NaN or inf, so that a checkpoint on disk is always usable; a full disk is a one-line
    ``DiskFull`` naming the folder and the space needed."""
    path = Path(path)
    bad = non_finite_tensors(state.get("model", {}))
    if bad:
        raise NonFiniteWeights(f"{path}: not written: the weights became NaN/inf ({bad[0]}"
                               f"{f' and {len(bad) - 1} more' if len(bad) > 1 else ''})")
    kept = f"the previous {path.name} is unchanged" if path.is_file() else "nothing was written"
    with naming_full_disk(path.parent, path.name, f"free some space there; {kept}", tensor_bytes(state)):
        write_file(path, lambda f: torch.save({**state, "format": FORMAT}, f), replace=True)  # this run's own


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by train.py (format 1 or 2, returned as format 2), or a release
    folder or Hugging Face Hub id (``utils.release``: the same dict, weights in float32); every
    problem is a one-line UserError."""
    if is_release(path):
        return {**read_release(path), "format": FORMAT}
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: checkpoint not found; train one with `python train.py` "
                        "(or `make demo`) or pass the right path")
    not_ours = f"{path}: not a checkpoint written by train.py"
    if path.stat().st_size == 0:
        raise UserError(f"{not_ours} (the file is empty); pass a .pt file written by train.py")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, zipfile.BadZipFile, RuntimeError, EOFError, OSError, ValueError):
        raise UserError(f"{not_ours} (unreadable or not a PyTorch file); pass a .pt file written by "
                        "train.py") from None
    if not isinstance(ckpt, dict) or "model" not in ckpt or not ({"config", "model_args"} & set(ckpt)):
        raise UserError(f"{not_ours} (no 'model'/'config' entries); pass a file written by this project's train.py")
    fmt = ckpt.get("format")
    if fmt not in READABLE_FORMATS:
        raise UserError(f"{path}: checkpoint format {fmt!r} is not one this version reads "
                        f"({', '.join(READABLE_FORMATS)}); update this project or retrain")
    if "config" not in ckpt:  # format 1 stored the same settings as "model_args"
        ckpt["config"] = ckpt.pop("model_args")
    ckpt["format"] = FORMAT
    return ckpt


def checkpoint_config(path: str | Path, ckpt: dict[str, Any]) -> ModelConfig:
    """The network settings of a loaded checkpoint; a one-line UserError if they are not ours."""
    try:
        return ModelConfig.from_dict(ckpt["config"])
    except (TypeError, ValueError) as e:
        raise UserError(f"{path}: its config does not describe a TextPromptIR ({e}); "
                        "was it written by another project?") from None


def load_model(path: str | Path, device: torch.device | str = "cpu",
               impl: str = "auto") -> tuple[TextPromptIR, dict[str, Any]]:
    """Rebuild the net from a checkpoint's config on ``device`` and load its weights."""
    ckpt = load_checkpoint(path, map_location="cpu")
    model = build_model(checkpoint_config(path, ckpt), impl=impl, device=device)
    mismatch = first_mismatch(model, ckpt["model"])
    if mismatch:
        raise UserError(f"{path}: weights do not fit the network its config describes ({mismatch}); "
                        "the file is damaged or was edited: use another checkpoint")
    model.load_state_dict(ckpt["model"])
    return model, ckpt


def check_same_config(path: str | Path, ckpt: dict[str, Any], config: ModelConfig) -> None:
    """Refuse to resume a run whose network differs from the checkpoint's."""
    theirs, ours = checkpoint_config(path, ckpt).to_dict(), config.to_dict()
    diff = [k for k in ours if theirs[k] != ours[k]]
    if diff:
        shown = ", ".join(f"{k}: checkpoint {theirs[k]!r} vs now {ours[k]!r}" for k in diff)
        raise UserError(f"{path}: checkpoint was trained with another network config ({shown}); "
                        "use the same --preset/model options, or start a new run with another --name")


CLASSIFIER_KEY = "classifier"  # the degradation classifier a restoration checkpoint may carry


def load_classifier(ckpt: dict[str, Any], path: str | Path = "the checkpoint") -> DegradationClassifier | None:
    """The degradation classifier stored in a loaded checkpoint (eval mode, on the CPU), or None for a
    checkpoint without one (trained before it existed, or with --classifier_steps 0). A malformed
    record is a one-line UserError naming ``path``."""
    record = ckpt.get(CLASSIFIER_KEY)
    if record is None:
        return None
    fix = f"add a new one with `python train.py --stage classifier --resume {path}`"
    if not isinstance(record, dict) or not {"labels", "config", "state"} <= set(record):
        raise UserError(f"{path}: its degradation classifier is malformed (expected labels, config and state); {fix}")
    try:
        # a classifier stored before it recorded its crop side reads in the crops its recipe trained on
        recipe = record.get("recipe") if isinstance(record.get("recipe"), dict) else {}
        net = DegradationClassifier(tuple(record["labels"]), **{"crop": recipe.get("size", TRAINING_CROP),
                                                                **record["config"]})
        net.load_state_dict(record["state"])
    except (TypeError, ValueError, RuntimeError, KeyError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"{path}: its degradation classifier does not load ({first}); {fix}") from None
    return net.eval()
