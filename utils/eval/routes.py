"""How test.py conditions the network on a set beyond the paper's one instruction per task: a
composite input restored task by task, and the blind route, which reads the tasks off the image.

Both wrap the network as a module with its call signature ``(image, embedding)``, so
``utils.eval.evaluate.evaluate_set`` scores them like the network itself; the given embedding is
ignored, each pass gets its own task's.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch

from utils.tasks import join_tasks, restore_order


class TaskChain(torch.nn.Module):
    """The network once per task, in ``tasks``' order, each pass conditioned on that task's own (D,)
    embedding alone and clamped to [0, 1] before the next, as demo.py runs a compound request."""

    def __init__(self, model: torch.nn.Module, embeddings: Sequence[torch.Tensor]) -> None:
        super().__init__()
        self.model, self.embeddings = model, list(embeddings)

    def forward(self, x: torch.Tensor, _embedding: torch.Tensor | None = None) -> torch.Tensor:
        for e in self.embeddings:
            x = self.model(x, e.to(x.device).float().expand(x.shape[0], -1)).clamp(0, 1)  # (B, D) per pass
        return x


class BlindRoute(torch.nn.Module):
    """Each image's tasks from ``classify`` (an image -> the set of tasks it shows), restored in
    ``order`` with each task's default embedding; an image read as clean is returned as it is.
    ``predictions`` keeps what was read, image by image, for the confusion matrix."""

    def __init__(self, model: torch.nn.Module, classify: Callable[[np.ndarray], tuple[str, ...]],
                 embeddings: dict[str, torch.Tensor], order: Sequence[str]) -> None:
        super().__init__()
        self.model, self.classify, self.embeddings, self.order = model, classify, embeddings, tuple(order)
        self.predictions: list[tuple[str, ...]] = []

    def forward(self, x: torch.Tensor, _embedding: torch.Tensor | None = None) -> torch.Tensor:
        outs = []
        for image in x:  # one image at a time: each has its own tasks
            rgb = image.permute(1, 2, 0).float().cpu().numpy()  # (H, W, 3)
            tasks = self.classify(rgb)
            self.predictions.append(tasks)
            steps = [self.embeddings[t] for t in restore_order(tasks, self.order)]
            outs.append(TaskChain(self.model, steps)(image[None]) if steps else image[None])
        return torch.cat(outs)


def confusion(truth: Sequence[tuple[str, ...]], predicted: Sequence[tuple[str, ...]]) -> dict[str, dict[str, int]]:
    """Counts of each true task set (rows) read as each set (columns); "none" for a clean read."""
    table: dict[str, dict[str, int]] = {}
    for t, p in zip(truth, predicted):
        row = table.setdefault(join_tasks(t), {})
        key = join_tasks(p)
        row[key] = row.get(key, 0) + 1
    return table


def exact_set_accuracy(truth: Sequence[tuple[str, ...]], predicted: Sequence[tuple[str, ...]]) -> float:
    """The share of images whose predicted set of tasks is exactly the true one."""
    return sum(set(t) == set(p) for t, p in zip(truth, predicted)) / max(len(truth), 1)
