"""Evaluate a restoration net on one test set (the paper's protocol, Sec. 4.1): restore
each degraded image with the task's instruction embedding and score it against the clean
target with PSNR/SSIM, beside the degraded input's own scores."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from statistics import mean

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset

from utils.device import autocast
from utils.errors import UserError
from utils.image_io import write_image
from utils.metrics import psnr_ssim, to_numpy_image
from utils.progress import progress as progress_bar


@dataclass
class ImageScore:
    name: str
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


@torch.no_grad()
def evaluate_set(model: torch.nn.Module, test_set: Dataset, text: torch.Tensor | None,
                 device: torch.device, precision: str = "fp32", y_channel: bool = False,
                 max_images: int | None = None, save_dir: str | Path | None = None,
                 progress: bool = True, num_workers: int = 0) -> tuple[SetScore, list[np.ndarray]]:
    """Score ``model`` on ``test_set`` (items ``{lq, gt, name}``) with the prompt ``text``
    of shape (D,), in ``precision`` (``utils.device.PRECISION_CHOICES``). Returns the scores
    and, for a preview, the first image's (input, output, target) as (H, W, 3) arrays. A NaN or
    inf output is a UserError: the checkpoint is broken, and no score is made of it."""
    model.eval()
    subset = Subset(test_set, range(min(len(test_set), max_images))) if max_images else test_set
    loader = DataLoader(subset, batch_size=1, num_workers=num_workers)
    score = SetScore(test_set.label, test_set.task, test_set.name, test_set.sigma)
    prompt = None if text is None else text.to(device).float().unsqueeze(0)  # (1, D)
    preview: list[np.ndarray] = []
    bar = progress_bar(len(subset), test_set.label, enabled=progress, leave=False)
    for item in loader:
        lq, gt = item["lq"].to(device), item["gt"]
        with autocast(device, precision):
            out = model(lq, prompt)
        name = item["name"][0]
        if not torch.isfinite(out).all():
            raise UserError(f"{test_set.label}, {name}: the network's output is NaN/inf, so its weights are "
                            "broken; evaluate another checkpoint")
        out_np, lq_np, gt_np = to_numpy_image(out), to_numpy_image(lq), to_numpy_image(gt)
        p, s = psnr_ssim(out_np, gt_np, y_channel)
        ip, iss = psnr_ssim(lq_np, gt_np, y_channel)
        score.images.append(ImageScore(name, p, s, ip, iss))
        if save_dir is not None:
            write_image(Path(save_dir) / f"{name}.png", np.round(out_np * 255).astype(np.uint8))
        if not preview:
            preview = [lq_np, out_np, gt_np]
        bar.update(1)
    bar.close()
    return score, preview
