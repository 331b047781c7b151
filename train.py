"""Train TextPromptIR (paper Sec. 4.1) on one CPU/GPU or many with torchrun.

    python train.py --stage text                      # fine-tune the instruction encoder
    python train.py                                   # train the restoration net (paper recipe)
    torchrun --nproc_per_node=8 train.py              # the same on 8 GPUs
    python train.py --preset demo --stage all         # the bundled demo, minutes on a CPU
"""
from __future__ import annotations

import math
import os
import random
import sys
import time
from argparse import Namespace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from net.model import TextPromptIR, count_parameters
from options import parse_repeats, train_options
from utils import dist
from utils.allocator import retain_freed_memory
from utils.checkpoint import check_same_config, load_checkpoint, save_checkpoint
from utils.errors import UserError
from utils.sampler import EpochSampler
from utils.schedulers import warmup_cosine


class NonFiniteLoss(UserError):
    pass


def run_text_stage(args: Namespace) -> None:
    """Fine-tune the instruction encoder on the instruction bank (issue: instruction understanding)."""
    from utils.text_finetune import finetune_text_encoder

    extra = {k: v for k, v in dict(epochs=args.text_epochs, lr=args.text_lr).items() if v is not None}
    res = finetune_text_encoder(args.text_encoder, args.text_ckpt, batch_size=args.text_batch_size,
                                pooling=args.pooling, seed=args.seed, bank_root=args.bank_root, **extra)
    print(f"text encoder saved to {args.text_ckpt} (validation accuracy {res['val_accuracy']:.3f})")


def rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "python": random.getstate(),
             "numpy": torch.from_numpy(np.random.get_state()[1].astype(np.int64))}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    np.random.set_state(("MT19937", state["numpy"].numpy().astype(np.uint32), 624))
    if torch.cuda.is_available() and "cuda" in state:
        torch.cuda.set_rng_state_all(state["cuda"])


def resolve_data_root(args: Namespace) -> str:
    """The dev preset trains on ../shared/datasets/BSD400 when it is there."""
    if args.preset != "dev":
        return args.data_root
    from utils.datasets import shared_dev_roots

    roots = shared_dev_roots()
    if roots is None:
        raise UserError("--preset dev: ../shared/datasets not found next to the repo; "
                        "use --data_root with your own data/Train layout")
    if args.val_root is None:
        args.val_root = str(roots[1])
    return str(roots[0])


def load_text(args: Namespace, info: dist.DistInfo):
    """The frozen, fine-tuned encoder's embeddings of the training bank (cached on disk, so
    the Dataset only indexes rows) and of each task's fixed validation instruction."""
    from net.text_encoder import TASKS, InstructionEncoder
    from utils.instructions import DEFAULT_INSTRUCTIONS, bank_embeddings

    encoder = InstructionEncoder.load(args.text_ckpt)
    # rank 0 fills the cache first; the others then read it
    if info.is_main:
        table, rows = bank_embeddings(encoder, "train", root=args.bank_root, cache_dir=args.text_ckpt)
    dist.barrier()
    if not info.is_main:
        table, rows = bank_embeddings(encoder, "train", root=args.bank_root, cache_dir=args.text_ckpt)
    val_text = dict(zip(TASKS, encoder.embed([DEFAULT_INSTRUCTIONS[t] for t in TASKS])))
    meta = {"dir": str(args.text_ckpt), "id": encoder.encoder_id, "hidden_size": encoder.hidden_size}
    return table, rows, val_text, meta


def validate(model: TextPromptIR, args: Namespace, val_text: dict | None, device: torch.device,
             writer, epoch: int) -> None:
    from utils.datasets import find_test_sets
    from utils.evaluation import evaluate_set

    sets, _ = find_test_sets(args.val_root, "all", crop16=True, paper_sets=False)
    for ts in sets:
        text = None if val_text is None else val_text[ts.task]
        score, preview = evaluate_set(model, ts, text, device, amp=args.precision == "bf16",
                                      max_images=args.val_max_images, progress=False)
        s = score.summary()
        tqdm.write(f"  val {s['label']}: PSNR {s['psnr']:.2f} dB (input {s['input_psnr']:.2f})")
        if writer is not None:
            tag = s["label"].replace(" ", "_")
            writer.add_scalar(f"val_psnr/{tag}", s["psnr"], epoch)
            writer.add_image(f"val/{tag}", np.concatenate(preview, axis=1), epoch, dataformats="HWC")
    model.train()


def train_restoration(args: Namespace) -> int:
    info = dist.setup(args.device)
    device = info.device
    torch.manual_seed(args.seed)  # the same initial weights on every rank
    data_root = resolve_data_root(args)

    if args.text_cond == "film":
        table, rows, val_text, text_meta = load_text(args, info)
        text_dim = int(table.shape[1])
        table = table.to(device)
    else:
        table, rows, val_text, text_meta, text_dim = None, None, None, {"dir": None, "id": None}, 384

    model = TextPromptIR(text_dim=text_dim, dim=args.dim, num_blocks=args.num_blocks,
                         num_refinement_blocks=args.num_refinement_blocks, heads=args.heads,
                         ffn_expansion_factor=args.ffn_expansion_factor, bias=args.bias,
                         layernorm_type=args.layernorm_type, text_cond=args.text_cond,
                         impl=args.impl).to(device)

    from utils.datasets import TrainDataset

    dataset = TrainDataset(data_root, args.de_type, patch_size=args.patch_size,
                           repeats=parse_repeats(args.repeat) or None, instruction_rows=rows,
                           list_dir=args.list_dir, seed=args.seed)
    per_rank = len(dataset) // info.world_size
    steps_per_epoch = per_rank // args.batch_size
    if steps_per_epoch == 0:
        raise UserError(f"{data_root}: {len(dataset)} training samples are fewer than one batch of "
                        f"{args.batch_size} per process; add data, --repeat or lower --batch_size")
    sampler = EpochSampler(len(dataset), info.rank, info.world_size, seed=args.seed)
    loader = DataLoader(dataset, batch_size=args.batch_size, sampler=sampler, drop_last=True,
                        num_workers=args.num_workers, pin_memory=device.type == "cuda")

    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    scheduler = warmup_cosine(optimizer, args.warmup_epochs * steps_per_epoch, args.epochs * steps_per_epoch)
    run_dir = Path(args.ckpt_dir) / args.name
    epoch, step, done_in_epoch = 0, 0, 0
    if args.resume:
        path = run_dir / "last.pt" if args.resume == "auto" else Path(args.resume)
        ckpt = load_checkpoint(path)
        check_same_config(path, ckpt, model.model_args)
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        epoch, step, done_in_epoch = ckpt["epoch"], ckpt["step"], ckpt["batches_done_in_epoch"]
        set_rng_state(ckpt["rng"])
        if info.is_main:
            print(f"resumed {path} at epoch {epoch + 1}, step {step}")

    net: torch.nn.Module = torch.compile(model) if args.compile else model
    if info.distributed:
        net = DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)
    amp = device.type == "cuda" and args.precision == "bf16"

    writer = None
    if info.is_main:
        from torch.utils.tensorboard import SummaryWriter

        log_dir = Path(args.log_dir) / args.name
        writer = SummaryWriter(str(log_dir))
        resolved = {k: v for k, v in vars(args).items()}
        resolved.update(data_root=data_root, text_dim=text_dim, world_size=info.world_size)
        for folder in (log_dir, run_dir):
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "options.yaml").write_text(yaml.safe_dump(resolved, sort_keys=False))
        print(f"TextPromptIR: {count_parameters(model) / 1e6:.2f}M parameters, {len(dataset)} samples, "
              f"{steps_per_epoch} steps/epoch x {args.epochs} epochs on {info.world_size} x {device}")

    def save(path: Path) -> None:
        if info.is_main:
            save_checkpoint(path, dict(
                model=model.state_dict(), model_args=model.model_args, optimizer=optimizer.state_dict(),
                scheduler=scheduler.state_dict(), scaler=None, epoch=epoch, step=step,
                batches_done_in_epoch=done_in_epoch, rng=rng_state(), text_encoder=text_meta,
                options={k: (v if isinstance(v, (int, float, str, bool, list, type(None))) else str(v))
                         for k, v in vars(args).items()}))

    model.train()
    try:
        while epoch < args.epochs:
            sampler.set_epoch(epoch, skip=done_in_epoch * args.batch_size)
            bar = tqdm(total=steps_per_epoch, initial=done_in_epoch, desc=f"epoch {epoch + 1}/{args.epochs}",
                       disable=not info.is_main or args.no_progress, dynamic_ncols=True)
            t0 = time.time()
            for batch in loader:
                lq = batch["lq"].to(device, non_blocking=True)
                gt = batch["gt"].to(device, non_blocking=True)
                text = None if table is None else table[batch["instruction_idx"].to(device)]
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                    out = net(lq, text)
                loss = F.l1_loss(out.float(), gt)
                mean_loss = dist.all_reduce_mean(loss.detach()).item()
                if not math.isfinite(mean_loss):
                    raise NonFiniteLoss(
                        f"loss became {mean_loss} at epoch {epoch + 1}, step {step + 1}; stopped without saving, "
                        f"the last good checkpoint stays in {run_dir}/last.pt; lower --lr or use --precision fp32")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if args.grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), args.grad_clip)
                optimizer.step()
                scheduler.step()
                step += 1
                done_in_epoch += 1
                bar.update(1)
                bar.set_postfix(loss=f"{mean_loss:.4f}", lr=f"{scheduler.get_last_lr()[0]:.2e}")
                if writer is not None and step % args.log_every == 0:
                    writer.add_scalar("train/loss", mean_loss, step)
                    writer.add_scalar("train/lr", scheduler.get_last_lr()[0], step)
                if args.max_steps and step >= args.max_steps:
                    bar.close()
                    save(run_dir / "last.pt")
                    if info.is_main:
                        print(f"stopped at --max_steps {args.max_steps}; saved {run_dir / 'last.pt'}")
                    return 0
            bar.close()
            epoch, done_in_epoch = epoch + 1, 0
            if info.is_main:
                if writer is not None:
                    writer.add_scalar("train/images_per_s", steps_per_epoch * args.batch_size
                                      * info.world_size / max(time.time() - t0, 1e-9), epoch)
                save(run_dir / "last.pt")
                if args.save_every and epoch % args.save_every == 0:
                    save(run_dir / f"epoch_{epoch:03d}.pt")
                if args.val_root and args.val_every and (epoch % args.val_every == 0 or epoch == args.epochs):
                    validate(model, args, val_text, device, writer, epoch)
            dist.barrier()
    except KeyboardInterrupt:
        save(run_dir / "last.pt")
        if info.is_main:
            print(f"\ninterrupted: saved {run_dir / 'last.pt'} (epoch {epoch + 1}, step {step}); "
                  "continue with --resume", file=sys.stderr)
        return 130
    finally:
        if writer is not None:
            writer.close()
    if info.is_main:
        print(f"done: {run_dir / 'last.pt'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = train_options(argv)
    retain_freed_memory()  # no page faults on big CPU tensors (utils/allocator.py)
    try:
        if args.stage in ("text", "all"):
            if int(os.environ.get("RANK", "0")) == 0:
                run_text_stage(args)
            if args.stage == "text":
                return 0
        return train_restoration(args)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    finally:
        dist.cleanup()


if __name__ == "__main__":
    sys.exit(main())
