"""Speed, memory and correctness of TextPromptIR on this machine's CPU or GPU.

    python bench.py                                          # paper network, CPU, fast and reference paths
    python bench.py --device cuda --amp --impl auto          # the GPU path, bf16
    python bench.py --device cuda --amp --impl auto --no_infer --train_batch 6,max --compile --cuda_graph
    python bench.py --check [--device cuda]                  # GPU path vs reference, compiled vs eager
    python bench.py --profile --device cuda --amp --compile --cuda_graph   # top kernels of the graphed step
    python bench.py --data_only --data_root data/Train --num_workers 0,1,2,4   # crops/s per DataLoader worker
    python bench.py --official ../TextPromptIR               # also the official code, same machine
    python bench.py --ckpt release/demo --onnx --impl auto --no_train   # onnxruntime beside torch, CPU

The paper network is built with ``--text_dim 384``, the width of the default MiniLM instruction
encoder (the paper's BERT-base gives 768; only the first linear layer of the text MLP changes).
Every measurement runs in a fresh Python process, so peak memory is that measurement's own;
CPU peak memory is malloc's live bytes (sampled after every op) above the level before the run,
CUDA peak memory the caching allocator's. Results go to ``--out`` (JSON, rewritten after every
measurement) and are printed as markdown tables.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from argparse import Namespace
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from net.model import ModelConfig, resolve_impl
from options import MAX_PATCH_SIZE, add_pixel_limit_option
from utils.bench.data_rate import run_data
from utils.bench.machine import machine_info
from utils.bench.measure import (
    flops_per_image,
    official_parity,
    run_check,
    run_inference,
    run_profile,
    run_train,
)
from utils.bench.report import markdown_tables
from utils.cli import (
    ArgumentParser,
    cli_main,
    int_in,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
)
from utils.errors import UserError
from utils.recipe import paper_values, read_recipe, recipe_keys, recipe_path
from utils.runtime.allocator import retain_freed_memory
from utils.runtime.device import cpu_has_bf16
from utils.tasks import DEGRADATIONS

RESULT_TAG = "BENCH_RESULT "


# ------------------------------------------------------------------ measurement helpers
def net_config(preset: str) -> dict[str, Any]:
    """The network settings of a preset, but ``text_dim``: the paper's (configs/paper.yaml) or the
    demo's (configs/demo.yaml)."""
    settings = ModelConfig().to_dict()
    recipe = {**paper_values("train"), **read_recipe(recipe_path(preset), "train", recipe_keys())}
    settings.update({k: v for k, v in recipe.items() if k in settings})
    del settings["text_dim"]
    return settings


def parse_sizes(text: str) -> list[tuple[int, int]]:
    """``"128,256,1024x768"`` -> ``[(128, 128), (256, 256), (768, 1024)]`` as (H, W);
    ``WxH`` is width x height, like image viewers print it."""
    sizes = []
    for item in text.split(","):
        item = item.strip().lower()
        try:
            if "x" in item:
                w, h = (int(v) for v in item.split("x"))
            else:
                h = w = int(item)
        except ValueError:
            raise UserError(f"--sizes {text!r}: write sizes like 128,256,1024x768 (WxH)") from None
        if h < 1 or w < 1:
            raise UserError(f"--sizes {text!r}: sizes must be positive")
        sizes.append((h, w))
    return sizes


def worker_counts(text: str) -> list[int]:
    """argparse type of ``--num_workers``: ``"0,1,2"`` -> ``[0, 1, 2]``."""
    try:
        counts = [int(item) for item in text.split(",")]
    except ValueError:
        counts = [-1]
    if any(n < 0 for n in counts):
        raise argparse.ArgumentTypeError(f"{text!r}: give worker counts like 0,1,2 (0 or more each)")
    return counts


def parse_batches(text: str, device: str) -> list[int | str]:
    """``"6,max"`` -> ``[6, "max"]``; ``max`` is the largest of MAX_BATCHES that fits (CUDA only)."""
    out: list[int | str] = []
    for item in text.split(","):
        item = item.strip()
        if item == "max" and device == "cuda":
            out.append(item)
        elif item.isdigit() and int(item) > 0:
            out.append(int(item))
        else:
            raise UserError(f"--train_batch {text!r}: give batch sizes like 6 or 6,max (max on CUDA only)")
    return out


WORKERS = {"infer": run_inference, "train": run_train, "flops": flops_per_image, "parity": official_parity,
           "data": run_data, "check": run_check, "profile": run_profile}


def _worker(cfg: dict[str, Any]) -> None:
    if cfg["allocator"] == "retain":
        retain_freed_memory()
    if cfg["threads"]:
        torch.set_num_threads(cfg["threads"])
    print(RESULT_TAG + json.dumps(WORKERS[cfg["kind"]](cfg)), flush=True)


def _spawn(cfg: dict[str, Any], timeout: float | None) -> dict[str, Any]:
    """Run one measurement in a fresh interpreter; an error is returned, not raised."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--_worker", json.dumps(cfg)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                              cwd=Path(__file__).resolve().parent)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    for line in proc.stdout.splitlines():
        if line.startswith(RESULT_TAG):
            return json.loads(line[len(RESULT_TAG):])
    tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
    return {"error": tail}


# ------------------------------------------------------------------ command line
def bench_parser() -> ArgumentParser:
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
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
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
    p.add_argument("--data_root", default=None, help="a data/Train-layout folder for --data_only")
    p.add_argument("--data_only", action="store_true", help="only the DataLoader's crops/s for each --num_workers")
    p.add_argument("--de_type", nargs="*", choices=DEGRADATIONS, default=None,
                   help="degradations to load (default: all found)")
    p.add_argument("--num_workers", type=worker_counts, default="0,1,2", help="DataLoader worker counts for --data_only")
    p.add_argument("--cache_gb", type=non_negative_float, default=4.0,
                   help="decoded-image cache for --data_only (0: off)")
    p.add_argument("--data_batches", type=positive_int, default=50, help="batches timed per worker count")
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


def base_config(args: Namespace) -> dict[str, Any]:
    """What every measurement of this run shares (and which implementations it compares)."""
    on_cuda = args.device == "cuda"
    impls = {"both": ["fast", "reference"], "auto": [resolve_impl("auto", args.device)]}.get(args.impl, [args.impl])
    impl_cfg: dict[str, dict[str, Any]] = {}
    allocator = "retain" if args.allocator == "as_shipped" else args.allocator
    if args.onnx:
        impls.append("onnxruntime")
    if args.official:
        from utils.bench.official import OFFICIAL_TEXT_DIM, check_official_repo

        if args.preset != "paper" or args.ckpt:
            raise UserError("--official: the official code builds the paper network only; drop --preset and --ckpt")
        check_official_repo(args.official)
        impls.append("official")
        impl_cfg["official"] = dict(text_dim=OFFICIAL_TEXT_DIM,
                                    allocator="default" if args.allocator == "as_shipped" else allocator)
    net, text_dim = net_config(args.preset), args.text_dim
    if args.ckpt:
        from utils.checkpoint import checkpoint_config, load_checkpoint

        try:
            net = checkpoint_config(args.ckpt, load_checkpoint(args.ckpt)).to_dict()
        except UserError as e:
            raise UserError(f"--ckpt {e}") from None
        text_dim = net.pop("text_dim")
    return dict(device=args.device, text_dim=text_dim, net=net, amp=args.amp, ckpt=args.ckpt,
                compile=args.compile, cuda_graph=args.cuda_graph, threads=args.threads, allocator=allocator,
                warmup=args.warmup if args.warmup is not None else (3 if on_cuda else 1),
                repeats=args.repeats or (20 if on_cuda else 3), train_size=args.train_size,
                train_steps=args.train_steps or (20 if on_cuda else 3), profile_steps=args.profile_steps,
                data_root=args.data_root, de_type=args.de_type, cache_gb=args.cache_gb, data_batch=6,
                max_pixels=args.max_pixels,
                data_batches=args.data_batches, official=args.official and str(Path(args.official).resolve()),
                impls=impls, impl_cfg=impl_cfg)


def check_args(args: Namespace) -> None:
    if args.device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device is visible; run with --device cpu")
    if args.amp and args.device != "cuda" and not cpu_has_bf16():
        raise UserError("--amp is bf16 autocast, which this CPU does not compute natively; drop it")
    if args.onnx and args.device != "cpu":
        raise UserError("--onnx times onnxruntime on the CPU; drop --device cuda")
    if args.data_only and not (args.data_root and Path(args.data_root).is_dir()):
        raise UserError(f"--data_root {args.data_root}: no such folder; --data_only needs a data/Train-layout folder")
    parse_sizes(args.sizes)  # bad values are refused now, not after the first measurements
    parse_batches(args.train_batch, args.device)
    if args.out is not None and Path(args.out).is_dir():
        raise UserError(f"--out {args.out}: this is a folder; pass the path of the JSON file to write")


def measure(args: Namespace, base: dict[str, Any], result: dict[str, Any], report: Callable[[str, dict], None]) -> None:
    """Run the measurements the options ask for, one fresh process each, reporting as they finish."""
    if args.check:
        result["check"] = _spawn({**base, "kind": "check"}, args.timeout)
        report("check", result["check"])
        return
    if args.profile:
        result["profile"] = _spawn({**base, "kind": "profile", "impl": base["impls"][0],
                                    "batch": parse_batches(args.train_batch, args.device)[0]}, args.timeout)
        report("profile", result["profile"])
        return
    if args.data_only:
        for workers in args.num_workers:
            r = _spawn({**base, "kind": "data", "workers": workers}, args.timeout)
            result["data"].append(r)
            report("data", r)
        return
    if not args.no_infer:
        for size in parse_sizes(args.sizes):
            for impl in base["impls"]:
                r = _spawn({**base, **base["impl_cfg"].get(impl, {}), "kind": "infer", "impl": impl,
                            "size": list(size)}, args.timeout)
                result["inference"].append({**r, "impl": impl, "size": list(size)})
                report("inference", result["inference"][-1])
    if not args.no_train:
        for batch in parse_batches(args.train_batch, args.device):
            for impl in base["impls"]:
                r = _spawn({**base, **base["impl_cfg"].get(impl, {}), "kind": "train", "impl": impl, "batch": batch},
                           args.timeout)
                result["train"].append({"batch": batch, **r, "impl": impl, "size": args.train_size})
                report("train", result["train"][-1])
    if not args.no_flops:
        result["flops"] = _spawn({**base, "kind": "flops", "device": "cpu"}, args.timeout)
    if args.official:
        result["official_parity"] = _spawn({**base, "kind": "parity", "device": "cpu"}, args.timeout)
        report("official parity", result["official_parity"])


def bench_main(argv: Sequence[str] | None) -> int:
    args = bench_parser().parse_args(argv)
    if args._worker is not None:
        _worker(json.loads(args._worker))
        return 0
    check_args(args)
    base = base_config(args)
    shown = argv if argv is not None else sys.argv[1:]
    result: dict[str, Any] = dict(
        command="python " + " ".join(["bench.py", *shown]), machine=machine_info(args.device, args.threads),
        preset=args.preset, config=base, impls=base["impls"], sizes=[list(size) for size in parse_sizes(args.sizes)],
        inference=[], train=[], data=[],
        allocators={impl: base["impl_cfg"].get(impl, {}).get("allocator", base["allocator"]) for impl in base["impls"]})
    out = Path(args.out or f"output/bench/{args.device}.json")
    out.parent.mkdir(parents=True, exist_ok=True)

    def report(kind: str, r: dict[str, Any]) -> None:
        what = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                         for k, v in r.items() if not isinstance(v, (list, dict)) and k != "table")
        print(f"  {kind}: {what}", flush=True)
        out.write_text(json.dumps(result, indent=1))  # after every measurement: partial runs keep theirs

    measure(args, base, result, report)
    out.write_text(json.dumps(result, indent=1))
    print()
    print(markdown_tables(result))
    print(f"\nwrote {out}")
    if result.get("profile", {}).get("table"):
        table = out.with_suffix(".md")
        table.write_text(f"{result['command']}\n\n{result['profile']['table']}\n")
        print(f"wrote {table}")
    return 1 if args.check and not result["check"].get("ok") else 0


def main(argv: Sequence[str] | None = None) -> int:
    return cli_main(bench_main, argv)


if __name__ == "__main__":
    sys.exit(main())
