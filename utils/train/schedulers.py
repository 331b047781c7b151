"""Learning-rate schedule of the paper (Sec. 4.1): linear warm-up, then cosine decay,
built from torch's own schedulers and stepped once per optimisation step."""
from __future__ import annotations

import torch
from torch.optim.lr_scheduler import CosineAnnealingLR, LinearLR, LRScheduler, SequentialLR


def warmup_cosine(optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int,
                  start_factor: float = 1e-3, eta_min: float = 0.0) -> LRScheduler:
    """Linear warm-up from ``start_factor * lr`` to ``lr`` over ``warmup_steps``, then a
    cosine decay to ``eta_min`` at ``total_steps``."""
    total_steps = max(total_steps, 1)
    warmup_steps = min(max(warmup_steps, 0), total_steps - 1)
    cosine = CosineAnnealingLR(optimizer, T_max=max(total_steps - warmup_steps, 1), eta_min=eta_min)
    if warmup_steps == 0:
        return cosine
    warmup = LinearLR(optimizer, start_factor=start_factor, end_factor=1.0, total_iters=warmup_steps)
    return SequentialLR(optimizer, [warmup, cosine], milestones=[warmup_steps])
