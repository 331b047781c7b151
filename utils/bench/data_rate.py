"""Training crops per second that the DataLoader alone delivers, as train.py builds it."""
from __future__ import annotations

import time
from typing import Any

from torch.utils.data import DataLoader, RandomSampler

from utils.data.layouts import find_train_pairs
from utils.data.train_set import TrainDataset
from utils.errors import UserError
from utils.tasks import DEGRADATIONS


def run_data(cfg: dict[str, Any]) -> dict[str, Any]:
    """Training crops per second delivered by the DataLoader alone (decode or cache, crop,
    augment, noise, collate) with ``workers`` worker processes, as train.py builds it."""
    de_types = []
    for de_type in cfg["de_type"] or DEGRADATIONS:
        try:
            find_train_pairs(cfg["data_root"], de_type)
            de_types.append(de_type)
        except UserError:
            continue
    if not de_types:
        raise UserError(f"{cfg['data_root']}: no Denoise/, Derain/ or Dehaze/ training images found; "
                        "point --data_root at a data/Train layout (see data/Train/README.md)")
    dataset = TrainDataset(cfg["data_root"], de_types, patch_size=cfg["train_size"], max_pixels=cfg["max_pixels"])
    cached = dataset.preload(int(cfg["cache_gb"] * 2**30))[0] if cfg["cache_gb"] else 0
    workers = cfg["workers"]
    loader = DataLoader(dataset, batch_size=cfg["data_batch"], drop_last=True, num_workers=workers,
                        sampler=RandomSampler(dataset, replacement=True, num_samples=10**9),
                        persistent_workers=workers > 0, prefetch_factor=4 if workers else None)
    batches = iter(loader)
    for _ in range(max(1, workers) * 2):  # workers started, first prefetches done
        next(batches)
    t0 = time.perf_counter()
    n = cfg["data_batches"]
    for _ in range(n):
        next(batches)
    seconds = time.perf_counter() - t0
    crops_per_s = n * cfg["data_batch"] / seconds
    return dict(workers=workers, crops_per_s=crops_per_s, crops_per_s_per_worker=crops_per_s / max(workers, 1),
                cached_images=cached, de_types=de_types)
