"""What restoration training reads: the instruction encoder's embeddings (fine-tuned by the text
stage, Sec. 3.1) and the training set with its distributed sampler and loader."""
from __future__ import annotations

from argparse import Namespace
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from utils.cli import identity_shares
from utils.data.sampler import EpochSampler
from utils.data.train_set import TrainDataset
from utils.errors import UserError
from utils.runtime.tiling import available_memory_bytes
from utils.stop_signals import ignore_in_worker
from utils.text.embeddings import training_embeddings
from utils.text.encoder_link import encoder_record
from utils.text.finetune import finetune_text_encoder
from utils.train import dist

CACHE_GB_MAX = 16.0


def run_text_stage(args: Namespace) -> None:
    """Fine-tune the instruction encoder on the instruction bank (Sec. 3.1)."""
    extra = {k: v for k, v in dict(epochs=args.text_epochs, lr=args.text_lr).items() if v is not None}
    res = finetune_text_encoder(args.text_encoder, args.text_ckpt, batch_size=args.text_batch_size,
                                pooling=args.pooling, seed=args.seed, bank_root=args.bank_root,
                                overwrite=args.overwrite, **extra)
    if not res["reused"]:
        print(f"text encoder saved to {args.text_ckpt} (validation accuracy {res['val_accuracy']:.3f})")


def load_text(args: Namespace, dist_info: dist.DistInfo,
              run_dir: Path) -> tuple[torch.Tensor, dict, dict[str, torch.Tensor], dict[str, Any]]:
    """What restoration training takes from the frozen, fine-tuned encoder (Sec. 3.1): the
    embeddings of the training bank (the Dataset only indexes rows), each task's fixed validation
    instruction, and the record of the encoder a checkpoint keeps."""
    if dist_info.is_main:  # rank 0 computes and stores them if needed; the others then read them
        cache = training_embeddings(args.text_ckpt, args.bank_root)
    dist.barrier()
    if not dist_info.is_main:
        cache = training_embeddings(args.text_ckpt, args.bank_root)
    return cache["table"], cache["rows"], cache["defaults"], encoder_record(cache, args.text_ckpt, run_dir)


def data_paths(args: Namespace) -> tuple[str, dict[str, str]]:
    """(training root, task folders overriding root/<Task>). ``--clean_images`` (``--preset dev``) trains
    on a folder of clean images, which ``--data_root`` must name; ``--denoise_root`` is one the denoising
    tasks take."""
    if not args.clean_images:
        return args.data_root, {} if args.denoise_root is None else {"denoise": args.denoise_root}
    if args.data_root is None:
        raise UserError("--preset dev (--clean_images) trains on a folder of clean images: pass --data_root <folder>")
    return args.data_root, {"denoise": args.data_root}


def cache_budget(args: Namespace) -> int:
    """Bytes of decoded images to keep: --cache_gb, or a quarter of the available memory (≤16 GiB)."""
    if args.cache_gb is not None:
        return int(max(args.cache_gb, 0) * 2**30)
    return int(min(available_memory_bytes() / 4, CACHE_GB_MAX * 2**30))


def build_data(args: Namespace, dist_info: dist.DistInfo,
               rows: dict | None) -> tuple[TrainDataset, DataLoader, EpochSampler, int]:
    """The training set, its distributed sampler and loader, and the steps per epoch."""
    root, task_dirs = data_paths(args)
    dataset = TrainDataset(root, args.de_type, patch_size=args.patch_size, repeats=dict(args.repeat) or None,
                           instruction_rows=rows, list_dir=args.list_dir, seed=args.seed, task_dirs=task_dirs,
                           synthetic=args.synthesize, channel_shuffle=args.channel_shuffle,
                           max_pixels=args.max_pixels, identity_share=identity_shares(args.identity_share))
    steps_per_epoch = len(dataset) // dist_info.world_size // args.batch_size
    if steps_per_epoch == 0:
        raise UserError(f"{root}: {len(dataset)} training samples are fewer than one batch of "
                        f"{args.batch_size} per process; add data, --repeat or lower --batch_size")
    cached, nbytes = dataset.preload(cache_budget(args))
    workers = args.num_workers
    sampler = EpochSampler(len(dataset), dist_info.rank, dist_info.world_size, seed=args.seed)
    loader = DataLoader(dataset, batch_size=args.batch_size, sampler=sampler, drop_last=True, num_workers=workers,
                        pin_memory=dist_info.device.type == "cuda", persistent_workers=workers > 0,
                        prefetch_factor=4 if workers > 0 else None, worker_init_fn=ignore_in_worker)
    if dist_info.is_main:
        print(dataset.summary())
        print(f"decoded once and kept in memory: {cached} images ({nbytes / 2**30:.2f} GiB)")
    return dataset, loader, sampler, steps_per_epoch
