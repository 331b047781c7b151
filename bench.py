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

import json
import subprocess
import sys
from argparse import Namespace
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from net.model import ModelConfig, resolve_impl
from options import bench_parser
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
    cli_main,
)
from utils.errors import UserError
from utils.recipe import paper_values, read_recipe, recipe_keys, recipe_path
from utils.runtime.allocator import retain_freed_memory
from utils.runtime.device import cpu_has_bf16

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
