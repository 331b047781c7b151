"""Speed and memory of TextPromptIR: inference latency and peak memory per image size,
training throughput (images/s) at batch 6 x 128^2, fast vs reference implementation, and
optionally the official implementation from a clone of its repository (``--official``).

    python bench.py                                   # paper network, CPU, both implementations
    python bench.py --sizes 256 --train_batch 6       # the numbers in BENCHMARKS.md
    python bench.py --device cuda --amp --compile     # on a GPU
    python bench.py --preset demo --data_root data/demo/Train   # tiny net + real data pipeline
    python bench.py --official ../TextPromptIR        # also the official code, same machine

The paper network is built with ``--text_dim 384``, the width of the default MiniLM
instruction encoder (the paper's BERT-base gives 768; only the first linear layer of the
text MLP changes). Every measurement runs in a fresh Python process, so peak memory is
that measurement's own; CPU peak memory is malloc's live bytes (sampled after every op)
above the level before the run, CUDA peak memory the caching allocator's. Results go to ``--out`` (JSON) and are printed as a markdown table.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from net.model import ModelConfig, TextPromptIR, build_model
from utils.allocator import malloc_live_bytes_fn, retain_freed_memory
from utils.device import autocast
from utils.errors import UserError

RESULT_TAG = "BENCH_RESULT "


def net_config(preset: str) -> dict[str, Any]:
    """The network settings of a preset, but ``text_dim``: the paper's (``ModelConfig``'s
    defaults, Sec. 4.1) or the demo's from options.py."""
    from options import PRESETS

    settings = ModelConfig().to_dict()
    settings.update({k: v for k, v in PRESETS[preset].items() if k in settings})
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


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


class _MallocPeak(TorchDispatchMode):
    """Tracks the peak of malloc's live bytes, sampled after every aten op (forward and
    backward). Resident-set size is not used: it counts freed-but-kept heap pages."""

    def __init__(self, live) -> None:
        super().__init__()
        self.live = live
        self.base = live()
        self.peak = self.base

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        self.peak = max(self.peak, self.live())
        return out


def peak_memory_mb(run, device: torch.device) -> float | None:
    """Peak memory of one call of ``run()`` above what was allocated before it: the CUDA
    caching allocator's peak, or on CPU malloc's live bytes (None where unavailable)."""
    if device.type == "cuda":
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        run()
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - base) / 2**20
    live = malloc_live_bytes_fn()
    if live is None:
        return None
    with _MallocPeak(live) as mode:
        run()
    return (mode.peak - mode.base) / 2**20


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _build(cfg: dict[str, Any], device: torch.device):
    torch.manual_seed(0)
    if cfg["impl"] == "official":
        from utils.official import load_official_model

        model = load_official_model(cfg["official"]).to(device)
        net = torch.compile(model) if cfg["compile"] else model
        return model, net
    model = build_model(ModelConfig(text_dim=cfg["text_dim"], **cfg["net"]), impl=cfg["impl"], device=device)
    if cfg["compile"]:
        from utils.train_step import compile_blocks

        compile_blocks(model)
    return model, model


def _autocast(cfg: dict[str, Any], device: torch.device):
    return autocast(device, "bf16" if cfg["amp"] else "fp32")


def run_inference(cfg: dict[str, Any]) -> dict[str, Any]:
    """Median latency of ``repeats`` forwards of one (1, 3, H, W) image after warm-up."""
    device = torch.device(cfg["device"])
    model, net = _build(cfg, device)
    model.eval()
    h, w = cfg["size"]
    x = torch.rand(1, 3, h, w, device=device)
    text = torch.randn(1, cfg["text_dim"], device=device)
    times = []
    with torch.inference_mode(), _autocast(cfg, device):
        for _ in range(cfg["warmup"]):
            net(x, text)
        _sync(device)
        for _ in range(cfg["repeats"]):
            t0 = time.perf_counter()
            net(x, text)
            _sync(device)
            times.append(time.perf_counter() - t0)
        peak = None if cfg["compile"] and device.type == "cpu" else peak_memory_mb(lambda: net(x, text), device)
    return dict(latency_ms=1e3 * statistics.median(times), times_ms=[1e3 * t for t in times], peak_mb=peak)


def _data_loader(cfg: dict[str, Any], device: torch.device):
    """The training DataLoader over a real folder (as train.py builds it), or None."""
    if not cfg.get("data_root"):
        return None
    from torch.utils.data import DataLoader, RandomSampler

    from utils.datasets import DEGRADATIONS, TrainDataset, find_train_pairs

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
    dataset = TrainDataset(cfg["data_root"], de_types, patch_size=cfg["train_size"], check_sizes=False)
    workers = cfg["num_workers"]
    return DataLoader(dataset, batch_size=cfg["train_batch"], drop_last=True,
                      sampler=RandomSampler(dataset, replacement=True, num_samples=10**9),
                      num_workers=workers, persistent_workers=workers > 0,
                      pin_memory=device.type == "cuda")


def run_train(cfg: dict[str, Any]) -> dict[str, Any]:
    """Training steps (forward, L1 loss, backward, AdamW step) at ``train_batch`` x
    ``train_size``^2; with ``data_root`` each step also draws its batch from the real
    data pipeline (decode, crop, augment, collate, copy to the device)."""
    device = torch.device(cfg["device"])
    model, net = _build(cfg, device)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-4, weight_decay=0.01)  # train.py's
    b, p, d = cfg["train_batch"], cfg["train_size"], cfg["text_dim"]
    table = torch.randn(64, d, device=device)  # stands in for the cached instruction embeddings
    loader = _data_loader(cfg, device)
    batches = iter(loader) if loader is not None else None
    lq, gt = torch.rand(b, 3, p, p, device=device), torch.rand(b, 3, p, p, device=device)
    idx = torch.randint(0, 64, (b,))

    def step() -> None:
        nonlocal lq, gt, idx
        if batches is not None:
            batch = next(batches)
            lq = batch["lq"].to(device, non_blocking=True)
            gt = batch["gt"].to(device, non_blocking=True)
            idx = batch["instruction_idx"].clamp_min(0) % 64
        with _autocast(cfg, device):
            out = net(lq, table[idx.to(device)])
        loss = F.l1_loss(out.float(), gt)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(cfg["warmup"]):
        step()
    _sync(device)
    times = []
    for _ in range(cfg["train_steps"]):
        t0 = time.perf_counter()
        step()
        _sync(device)
        times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    peak = None if cfg["compile"] and device.type == "cpu" else peak_memory_mb(step, device)
    return dict(step_s=med, images_per_s=b / med, times_s=times, peak_mb=peak,
                data_pipeline=loader is not None)


def flops_per_image(cfg: dict[str, Any], size: int = 128) -> dict[str, float]:
    """Forward GFLOPs of one ``size``^2 image (matmuls and convolutions, as counted by
    torch.utils.flop_counter; a multiply-add is 2 FLOPs), per implementation."""
    from torch.utils.flop_counter import FlopCounterMode

    out = {}
    for impl in cfg["impls"]:
        run_cfg = {**cfg, **cfg["impl_cfg"].get(impl, {}), "impl": impl, "compile": False}
        model, _ = _build(run_cfg, torch.device("cpu"))
        model.eval()
        counter = FlopCounterMode(display=False)
        with torch.inference_mode(), counter:
            model(torch.rand(1, 3, size, size), torch.randn(1, run_cfg["text_dim"]))
        out[impl] = counter.get_total_flops() / 1e9
    return out


def official_parity(cfg: dict[str, Any]) -> dict[str, float]:
    """Largest output difference between the official network and ours (reference and
    fast) carrying the same random weights, on a (2, 3, 64, 96) batch in fp32."""
    from utils.official import OFFICIAL_TEXT_DIM, copy_weights_to_official, load_official_model

    torch.manual_seed(0)
    config = ModelConfig(text_dim=OFFICIAL_TEXT_DIM, **cfg["net"])
    ours = TextPromptIR(config, impl="reference")
    with torch.no_grad():  # move the norms, temperatures and biases off their initial values
        for name, p in ours.named_parameters():
            if name.endswith(("temperature", "norm1.weight", "norm2.weight")):
                p.uniform_(0.5, 1.5)
            elif name.endswith(".bias"):
                p.normal_(0.0, 0.05)
    official = load_official_model(cfg["official"])
    copy_weights_to_official(ours, official)
    ours.eval()
    official.eval()
    x, text = torch.rand(2, 3, 64, 96), torch.randn(2, OFFICIAL_TEXT_DIM)
    out = {}
    fast = TextPromptIR(config, impl="fast").eval()
    fast.load_state_dict(ours.state_dict())
    with torch.no_grad():
        want = official(x, text)
        for impl, net in (("reference", ours), ("fast", fast)):
            out[f"{impl}_max_abs_diff"] = (net(x, text) - want).abs().max().item()
    return out


def _worker(cfg: dict[str, Any]) -> None:
    if cfg["allocator"] == "retain":
        retain_freed_memory()
    if cfg["threads"]:
        torch.set_num_threads(cfg["threads"])
    run = {"infer": run_inference, "train": run_train, "flops": flops_per_image,
           "parity": official_parity}[cfg["kind"]]
    print(RESULT_TAG + json.dumps(run(cfg)), flush=True)


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


def bench_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Benchmark TextPromptIR: inference latency / peak memory "
                                            "and training images/s, fast vs reference.")
    p.add_argument("--preset", choices=("paper", "demo"), default="paper",
                   help="paper: dim 48, blocks 4-6-6-8, 4 refinement; demo: the tiny demo net")
    p.add_argument("--text_dim", type=int, default=384,
                   help="instruction embedding width (384: the default MiniLM encoder; paper BERT: 768)")
    p.add_argument("--impl", choices=("fast", "reference", "both"), default="both")
    p.add_argument("--official", default=None, metavar="DIR",
                   help="also measure the official implementation from a clone of "
                        "github.com/MoTong-AI-studio/TextPromptIR at DIR (needs einops; paper preset; "
                        "its text input is 768-d), and check that it computes what ours does")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--sizes", default="128,256,512,1024x768",
                   help="inference sizes, comma separated; WxH for non-square (default %(default)s)")
    p.add_argument("--repeats", type=int, default=None,
                   help="timed forwards per size (default: 3 on CPU, 20 on CUDA)")
    p.add_argument("--warmup", type=int, default=None, help="untimed runs first (default: 1 CPU, 3 CUDA)")
    p.add_argument("--train_batch", type=int, default=6)
    p.add_argument("--train_size", type=int, default=128)
    p.add_argument("--train_steps", type=int, default=None, help="timed steps (default: 3 CPU, 20 CUDA)")
    p.add_argument("--no_infer", action="store_true", help="skip the inference measurements")
    p.add_argument("--no_train", action="store_true", help="skip the training measurements")
    p.add_argument("--data_root", default=None,
                   help="also time training with batches from this data/Train-layout folder")
    p.add_argument("--de_type", nargs="*", default=None, help="degradations to load (default: all found)")
    p.add_argument("--num_workers", type=int, default=2, help="DataLoader workers for --data_root")
    p.add_argument("--amp", action="store_true", help="bf16 autocast (CUDA only)")
    p.add_argument("--compile", action="store_true", help="torch.compile the network (warm-up compiles)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--allocator", choices=("default", "retain", "as_shipped"), default="default",
                   help="default: glibc malloc as a plain `import torch` gets it; retain: keep freed "
                        "memory (utils/allocator.py; Linux/glibc); as_shipped: each implementation as its "
                        "own scripts run it: ours retain (train.py, test.py and demo.py set it), "
                        "the official default")
    p.add_argument("--no_flops", action="store_true", help="skip counting FLOPs per image")
    p.add_argument("--timeout", type=float, default=3600, help="seconds per measurement")
    p.add_argument("--out", default=None, help="JSON output (default: output/bench/<device>.json)")
    p.add_argument("--_worker", default=None, help=argparse.SUPPRESS)
    return p


def _fmt(v: float | None, spec: str) -> str:
    return "n/a" if v is None else format(v, spec)


def markdown_table(result: dict[str, Any]) -> str:
    """The results as markdown: one table for inference, one for training."""
    impls = result["impls"]
    baselines = [i for i in impls if i != "fast"] if "fast" in impls else []

    def ratio(fast: float | None, base: float | None) -> str:
        return f"{fast / base:.2f}x" if fast and base else "n/a"

    lines = ["malloc: " + ", ".join(f"{k} {v}" for k, v in result.get("allocators", {}).items()), ""]
    if result["inference"]:
        head = "| size (HxW) | " + " | ".join(f"{i} ms | {i} peak MB" for i in impls)
        head += "".join(f" | fast / {b}" for b in baselines)
        lines += [head + " |", "|" + "---|" * (1 + 2 * len(impls) + len(baselines))]
        for size in result["sizes"]:
            row = [f"{size[0]}x{size[1]}"]
            lat = {}
            for impl in impls:
                r = next(x for x in result["inference"] if x["impl"] == impl and x["size"] == size)
                lat[impl] = r.get("latency_ms")
                row += [_fmt(r.get("latency_ms"), ".0f") if "error" not in r else f"error: {r['error']}",
                        _fmt(r.get("peak_mb"), ".0f")]
            row += [ratio(lat["fast"], lat[b]) for b in baselines]
            lines.append("| " + " | ".join(row) + " |")
        lines.append("")
    if result["train"]:
        lines += ["| training | images/s | step s | peak MB |", "|---|---|---|---|"]
        for r in result["train"]:
            label = f"{r['impl']}, {r['batch']}x{r['size']}^2" + (", data pipeline" if r.get("data_pipeline") else "")
            if "error" in r:
                lines.append(f"| {label} | error: {r['error']} | | |")
            else:
                lines.append(f"| {label} | {r['images_per_s']:.2f} | {r['step_s']:.2f} | {_fmt(r['peak_mb'], '.0f')} |")
        steps = {(r["impl"], r.get("data_pipeline")): r.get("step_s") for r in result["train"]}
        for b in baselines:
            if steps.get(("fast", False)) and steps.get((b, False)):
                lines.append(f"\nfast / {b} training step: {ratio(steps[('fast', False)], steps[(b, False)])}")
        lines.append("")
    if result.get("flops") and "error" not in result["flops"]:
        lines.append("forward GFLOPs per 128x128 image: "
                     + ", ".join(f"{v:.1f} ({k})" for k, v in result["flops"].items()))
    if result.get("official_parity"):
        p = result["official_parity"]
        lines.append("largest |ours - official| with the same weights (fp32, 2x3x64x96): "
                     + ", ".join(f"{v:.1e} ({k.split('_')[0]})" for k, v in p.items() if k != "error")
                     + (f"error: {p['error']}" if "error" in p else ""))
    return "\n".join(lines)


def machine_info(device: str, threads: int) -> dict[str, Any]:
    info = dict(cpu=cpu_name(), cpu_count=os.cpu_count(), torch=torch.__version__,
                python=platform.python_version(), torch_threads=threads or torch.get_num_threads())
    if device == "cuda" and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["cuda"] = torch.version.cuda
    try:
        info["load_average"] = os.getloadavg()
    except OSError:
        pass
    return info


def main(argv: list[str] | None = None) -> int:
    args = bench_parser().parse_args(argv)
    if args._worker is not None:
        _worker(json.loads(args._worker))
        return 0
    try:
        if args.device == "cuda" and not torch.cuda.is_available():
            raise UserError("--device cuda: no CUDA device is visible; run with --device cpu")
        if args.amp and args.device != "cuda":
            raise UserError("--amp is bf16 autocast on CUDA; drop it for --device cpu")
        if args.data_root and not Path(args.data_root).is_dir():
            raise UserError(f"--data_root {args.data_root}: no such folder; give a data/Train-layout folder")
        sizes = parse_sizes(args.sizes)
        on_cuda = args.device == "cuda"
        impls = ["fast", "reference"] if args.impl == "both" else [args.impl]
        impl_cfg: dict[str, dict[str, Any]] = {}
        allocator = "retain" if args.allocator == "as_shipped" else args.allocator
        if args.official:
            from utils.official import OFFICIAL_TEXT_DIM, check_official_repo

            if args.preset != "paper":
                raise UserError("--official: the official code builds the paper network only; drop --preset")
            check_official_repo(args.official)
            impls.append("official")
            impl_cfg["official"] = dict(text_dim=OFFICIAL_TEXT_DIM,
                                        allocator="default" if args.allocator == "as_shipped" else allocator)
        base = dict(device=args.device, text_dim=args.text_dim, net=net_config(args.preset),
                    amp=args.amp, compile=args.compile, threads=args.threads, allocator=allocator,
                    warmup=args.warmup if args.warmup is not None else (3 if on_cuda else 1),
                    repeats=args.repeats or (20 if on_cuda else 3),
                    train_batch=args.train_batch, train_size=args.train_size,
                    train_steps=args.train_steps or (20 if on_cuda else 3),
                    data_root=args.data_root, de_type=args.de_type, num_workers=args.num_workers,
                    official=args.official and str(Path(args.official).resolve()),
                    impls=impls, impl_cfg=impl_cfg)
        result: dict[str, Any] = dict(
            command="python " + " ".join([Path(sys.argv[0]).name] + (argv if argv is not None else sys.argv[1:])),
            machine=machine_info(args.device, args.threads), preset=args.preset, config=base,
            impls=impls, sizes=[list(s) for s in sizes], inference=[], train=[],
            allocators={impl: impl_cfg.get(impl, {}).get("allocator", allocator) for impl in impls})

        out = Path(args.out or f"output/bench/{args.device}.json")
        out.parent.mkdir(parents=True, exist_ok=True)

        def report(kind: str, r: dict[str, Any]) -> None:
            what = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                             for k, v in r.items() if not isinstance(v, list))
            print(f"  {kind}: {what}", flush=True)
            out.write_text(json.dumps(result, indent=1))  # after every measurement: partial runs keep theirs

        if not args.no_infer:
            for size in sizes:
                for impl in impls:
                    r = _spawn({**base, **impl_cfg.get(impl, {}), "kind": "infer", "impl": impl,
                                "size": list(size)}, args.timeout)
                    r.update(impl=impl, size=list(size))
                    result["inference"].append(r)
                    report("inference", r)
        if not args.no_train:
            runs = [(impl, False) for impl in impls] + ([("fast", True)] if args.data_root else [])
            for impl, data in runs:
                cfg = {**base, **impl_cfg.get(impl, {}), "kind": "train", "impl": impl,
                       "data_root": args.data_root if data else None}
                r = _spawn(cfg, args.timeout)
                r.update(impl=impl, batch=args.train_batch, size=args.train_size, data_pipeline=data)
                result["train"].append(r)
                report("train", r)
        if not args.no_flops:
            result["flops"] = _spawn({**base, "kind": "flops", "device": "cpu", "threads": args.threads},
                                     args.timeout)
        if args.official:
            result["official_parity"] = _spawn({**base, "kind": "parity", "device": "cpu"}, args.timeout)
            report("official parity", result["official_parity"])
        out.write_text(json.dumps(result, indent=1))
        print()
        print(markdown_table(result))
        print(f"\nwrote {out}")
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
