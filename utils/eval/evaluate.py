"""Evaluate a restoration net on one test set (the paper's protocol, Sec. 4.1): restore
each degraded image with the task's instruction embedding and score it against the clean
target with PSNR/SSIM, beside the degraded input's own scores."""
from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from statistics import mean
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset

from utils.data.image_io import write_image
from utils.errors import UserError
from utils.metrics import psnr_ssim, to_numpy_image
from utils.progress import progress as progress_bar
from utils.runtime.device import autocast
from utils.stop_signals import ignore_in_worker


@dataclass
class ImageScore:
    name: str
    path: str  # relative to the set's image folder: unique within the set
    psnr: float
    ssim: float
    input_psnr: float
    input_ssim: float


@dataclass
class SetScore:
    label: str
    task: str
    name: str
    sigma: int | None
    images: list[ImageScore] = field(default_factory=list)

    def _avg(self, key: str) -> float:
        return mean(getattr(s, key) for s in self.images) if self.images else float("nan")

    def summary(self) -> dict:
        return dict(label=self.label, task=self.task, name=self.name, sigma=self.sigma, n=len(self.images),
                    psnr=self._avg("psnr"), ssim=self._avg("ssim"),
                    input_psnr=self._avg("input_psnr"), input_ssim=self._avg("input_ssim"))

    def rows(self) -> list[dict]:
        return [dict(set=self.label, **asdict(s)) for s in self.images]


def saved_image_names(paths: Sequence[str]) -> dict[str, str]:
    """Where ``--save_images`` writes each image of a set, relative to the set's folder: the input's
    relative path with ``.png`` for its extension (``sub1/b.jpg`` -> ``sub1/b.png``); inputs that
    would share a name (``a.png`` and ``a.jpg``) keep their extension in it (``a.png.png``,
    ``a.jpg.png``). A UserError if two names still collide."""
    stem = {p: str(PurePosixPath(p).with_suffix("")) for p in paths}
    shared = Counter(stem.values())
    names = {p: (p if shared[stem[p]] > 1 else stem[p]) + ".png" for p in paths}
    taken: dict[str, str] = {}
    for p, name in names.items():
        if name in taken:
            raise UserError(f"{p} and {taken[name]}: their restored images would both be {name}; rename one")
        taken[name] = p
    return names


def saved_image_paths(save_dir: Path, test_set: Dataset) -> list[Path]:
    """The files ``evaluate_set`` writes into ``save_dir`` for ``test_set``, in its order."""
    names = saved_image_names(test_set.paths)
    return [save_dir / names[p] for p in test_set.paths]


@torch.no_grad()
def evaluate_set(model: torch.nn.Module, test_set: Dataset, embedding: torch.Tensor | None,
                 device: torch.device, precision: str = "fp32", y_channel: bool = False,
                 max_images: int | None = None, save_dir: str | Path | None = None,
                 progress: bool = True, num_workers: int = 0,
                 overwrite: bool = False) -> tuple[SetScore, list[np.ndarray]]:
    """Score ``model`` on ``test_set`` (items ``{lq, gt, name}``) with the instruction
    embedding ``embedding`` of shape (D,), in ``precision`` (``utils.runtime.device.PRECISION_CHOICES``). Returns the scores
    and, for a preview, the first image's (input, output, target) as (H, W, 3) arrays. A NaN or
    inf output is a UserError: the checkpoint is broken, and no score is made of it. Each restored
    image goes into ``save_dir`` when given, whole or not at all, replacing one there only with ``overwrite``."""
    model.eval()
    subset = Subset(test_set, range(min(len(test_set), max_images))) if max_images else test_set
    loader = DataLoader(subset, batch_size=1, num_workers=num_workers, worker_init_fn=ignore_in_worker)
    score = SetScore(test_set.label, test_set.task, test_set.name, test_set.sigma)
    batch_embedding = None if embedding is None else embedding.to(device).float().unsqueeze(0)  # (1, D)
    preview: list[np.ndarray] = []
    bar = progress_bar(len(subset), test_set.label, enabled=progress, leave=False)
    saved_names = saved_image_names(test_set.paths) if save_dir is not None else {}
    for item in loader:
        lq, gt = item["lq"].to(device), item["gt"]
        with autocast(device, precision):
            out = model(lq, batch_embedding)
        name, path = item["name"][0], item["path"][0]
        if not torch.isfinite(out).all():
            raise UserError(f"{test_set.label}, {name}: the network's output is NaN/inf, so its weights are "
                            "broken; evaluate another checkpoint")
        out_np, lq_np, gt_np = to_numpy_image(out), to_numpy_image(lq), to_numpy_image(gt)
        p, s = psnr_ssim(out_np, gt_np, y_channel)
        ip, iss = psnr_ssim(lq_np, gt_np, y_channel)
        score.images.append(ImageScore(name, path, p, s, ip, iss))
        if save_dir is not None:
            write_image(Path(save_dir) / saved_names[path], np.round(out_np * 255).astype(np.uint8), overwrite)
        if not preview:
            preview = [lq_np, out_np, gt_np]
        bar.update(1)
    bar.close()
    return score, preview
