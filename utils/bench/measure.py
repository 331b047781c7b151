"""The measurements of bench.py and scripts/gpu_check.py, each run in the calling process from a
config dict (bench.py starts one fresh process per measurement; the GPU check runs them in one
process, so that compiled graphs are shared): inference latency, training images/s, the
correctness check, the kernel profile of a training step, parity with the official code.

A config holds ``device``, ``impl`` (``fast``, ``reference``, ``auto``, ``official`` or ``onnxruntime``:
the network exported to ONNX, run by onnxruntime on the CPU), ``ckpt`` (a checkpoint or release whose
weights to load, or None), ``net``
(the ``ModelConfig`` fields but ``text_dim``), ``text_dim``, ``amp`` (bf16 autocast), ``compile``,
``cuda_graph``, ``warmup``, ``repeats``, ``train_size``, ``train_steps``, ``profile_steps`` and
``official`` (a clone of the official code), as ``bench.base_config`` builds it.
"""
from __future__ import annotations

import os
import re
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import torch
from torch.profiler import ProfilerActivity, profile
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

from net.model import ModelConfig, TextPromptIR, build_model, resolve_impl
from utils.bench.official import OFFICIAL_TEXT_DIM, copy_weights_to_official, load_official_model
from utils.checkpoint import load_model
from utils.release.onnx_export import largest_difference, onnx_inputs, session, write_onnx
from utils.runtime.allocator import malloc_live_bytes_fn
from utils.runtime.compile import compile_blocks, compile_stats
from utils.runtime.device import autocast, is_out_of_memory
from utils.train.step import TrainStep, graphed_or_plain, make_optimizer

MAX_BATCHES = (128, 96, 64, 48, 32, 24, 16, 12, 8, 6)  # tried in order by --train_batch max
CURVE_STEPS = 50  # training-curve check: compiled / graphed against eager, same seed
LIMITS = {"path_rel": 1e-4, "compile_rel": 1e-3, "curve_abs": 1e-3}
TOP_KERNELS = 15  # rows of the profile's kernel table


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


def peak_memory_mb(run: Callable[[], Any], device: torch.device) -> float | None:
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


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def build_net(cfg: dict[str, Any], device: torch.device, compile_blocks_too: bool | None = None) -> torch.nn.Module:
    """Our network (``cfg["impl"]``) or the official one on ``device``; compiled per block when asked."""
    torch.manual_seed(0)
    compile_it = cfg["compile"] if compile_blocks_too is None else compile_blocks_too
    if cfg["impl"] == "official":
        model = load_official_model(cfg["official"]).to(device)
        return torch.compile(model) if compile_it else model
    if cfg.get("ckpt"):  # a checkpoint's or release's own weights
        model, _ = load_model(cfg["ckpt"], device=device, impl=cfg["impl"])
    else:
        model = build_model(ModelConfig(text_dim=cfg["text_dim"], **cfg["net"]), impl=cfg["impl"], device=device)
    if compile_it:
        compile_blocks(model)
    return model


def precision_of(cfg: dict[str, Any]) -> str:
    return "bf16" if cfg["amp"] else "fp32"


# ------------------------------------------------------------------ measurements (one per process)
def run_onnx_inference(cfg: dict[str, Any]) -> dict[str, Any]:
    """Median latency of onnxruntime (CPU) on one (1, 3, H, W) image after warm-up, running the network
    exported as ``export --onnx`` writes it, and the largest difference of its output from torch's."""
    model = build_net({**cfg, "impl": "reference", "compile": False}, torch.device("cpu")).eval()
    h, w = cfg["size"]
    x, embedding = torch.rand(1, 3, h, w), torch.randn(1, cfg["text_dim"])
    with tempfile.TemporaryDirectory() as tmp:
        path = write_onnx(model, tmp)
        ort_session = session(path, cfg["threads"])
        feed = onnx_inputs(model, x, embedding)
        t0 = time.perf_counter()
        for _ in range(cfg["warmup"]):
            ort_session.run(None, feed)
        first_s, times = time.perf_counter() - t0, []
        for _ in range(cfg["repeats"]):
            t0 = time.perf_counter()
            ort_session.run(None, feed)
            times.append(time.perf_counter() - t0)
        diff = largest_difference(model, path, x, embedding, ort_session)
    return dict(latency_ms=1e3 * statistics.median(times), times_ms=[1e3 * t for t in times], peak_mb=None,
                warmup_s=first_s, max_abs_diff=diff)


def run_inference(cfg: dict[str, Any]) -> dict[str, Any]:
    """Median latency of ``repeats`` forwards of one (1, 3, H, W) image after warm-up."""
    if cfg["impl"] == "onnxruntime":
        return run_onnx_inference(cfg)
    device = torch.device(cfg["device"])
    model = build_net(cfg, device).eval()
    h, w = cfg["size"]
    x = torch.rand(1, 3, h, w, device=device)
    embedding = torch.randn(1, cfg["text_dim"], device=device)
    times = []
    with torch.inference_mode(), autocast(device, precision_of(cfg)):
        t0 = time.perf_counter()
        for _ in range(cfg["warmup"]):
            model(x, embedding)
        sync(device)
        first_s = time.perf_counter() - t0
        for _ in range(cfg["repeats"]):
            t0 = time.perf_counter()
            model(x, embedding)
            sync(device)
            times.append(time.perf_counter() - t0)
        peak = None if cfg["compile"] and device.type == "cpu" else peak_memory_mb(lambda: model(x, embedding), device)
    return dict(latency_ms=1e3 * statistics.median(times), times_ms=[1e3 * t for t in times], peak_mb=peak,
                warmup_s=first_s)


def run_inference_set(cfg: dict[str, Any]) -> dict[str, Any]:
    """``passes`` passes over a set of images of the sizes ``sizes`` (a list of [H, W], one image
    each, in order), as test.py scores a benchmark: the seconds of each pass (the first includes
    compiling each new size when ``cfg["compile"]``) and the compile time."""
    device = torch.device(cfg["device"])
    model = build_net(cfg, device).eval()
    embedding = torch.randn(1, cfg["text_dim"], device=device)
    images = [torch.rand(1, 3, h, w, device=device) for h, w in cfg["sizes"]]
    before = compile_stats() or {"seconds": 0.0}
    passes = []
    with torch.inference_mode(), autocast(device, precision_of(cfg)):
        for _ in range(cfg["passes"]):
            sync(device)
            t0 = time.perf_counter()
            for x in images:
                model(x, embedding)
            sync(device)
            passes.append(time.perf_counter() - t0)
    after = compile_stats() or before
    return dict(images=len(images), shapes=sorted({tuple(s) for s in cfg["sizes"]}), pass_s=passes,
                compile_s=after["seconds"] - before["seconds"])


def train_setup(cfg: dict[str, Any], device: torch.device, batch: int):
    """Network, a training step (eager, compiled and/or CUDA-graphed as ``cfg`` asks) and one
    random batch; the step is train.py's (``utils.train.step``)."""
    model = build_net(cfg, device).train()
    graphed = cfg["cuda_graph"] and device.type == "cuda"
    optimizer = make_optimizer(model, 2e-4, 0.01, device, graphed)  # train.py's
    step = TrainStep(model, optimizer, device, precision_of(cfg))
    p = cfg["train_size"]
    lq, gt = torch.rand(batch, 3, p, p, device=device), torch.rand(batch, 3, p, p, device=device)
    embedding = torch.randn(batch, cfg["text_dim"], device=device)
    step_fn = graphed_or_plain(step, lq, gt, embedding) if graphed else step
    return step_fn, (lq, gt, embedding)


def largest_batch(cfg: dict[str, Any], device: torch.device, at_most: int | None = None) -> int:
    """The largest of MAX_BATCHES (up to ``at_most``) whose training step runs without running out
    of memory. Each size tried compiles anew when ``cfg["compile"]``: ``at_most`` saves the tries."""
    for batch in (b for b in MAX_BATCHES if at_most is None or b <= at_most):
        try:
            step_fn, inputs = train_setup(cfg, device, batch)
            step_fn(*inputs)
            sync(device)
            return batch
        except (torch.OutOfMemoryError, RuntimeError) as e:
            if not is_out_of_memory(e):
                raise
        finally:
            step_fn = inputs = None
            torch.cuda.empty_cache()
    raise RuntimeError(f"no batch of {MAX_BATCHES} fits")


def run_train(cfg: dict[str, Any]) -> dict[str, Any]:
    """Training steps (forward, L1 loss, backward, AdamW) at ``batch`` x ``train_size``^2 on random
    data: median step time, images/s, peak memory of a step (``peak_mb``) and, on CUDA, of the
    whole run (``total_peak_mb``: weights, optimizer state, a CUDA graph's pool); the time to build
    and capture (``setup_s``), of the warm-up steps (``warmup_s``) and of compiling (``compile_s``)."""
    device = torch.device(cfg["device"])
    before = compile_stats() or {"seconds": 0.0, "graphs": 0, "from_cache": 0}
    batch = largest_batch(cfg, device, cfg.get("max_batch")) if cfg["batch"] == "max" else int(cfg["batch"])
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    step_fn, inputs = train_setup(cfg, device, batch)
    sync(device)
    setup_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(cfg["warmup"]):
        step_fn(*inputs)
    sync(device)
    warmup_s = time.perf_counter() - t0
    after = compile_stats() or before
    times = []
    for _ in range(cfg["train_steps"]):
        t0 = time.perf_counter()
        step_fn(*inputs)
        sync(device)
        times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    peak = None if cfg["compile"] and device.type == "cpu" else peak_memory_mb(lambda: step_fn(*inputs), device)
    graphed = type(step_fn).__name__ == "CudaGraphStep"
    total = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else None
    return dict(batch=batch, step_s=med, images_per_s=batch / med, times_s=times, peak_mb=peak,
                total_peak_mb=total, setup_s=setup_s, warmup_s=warmup_s, cuda_graph=graphed,
                compile_s=after["seconds"] - before["seconds"], graphs_compiled=after["graphs"] - before["graphs"],
                graphs_from_cache=after["from_cache"] - before["from_cache"])


def official_parity(cfg: dict[str, Any]) -> dict[str, float]:
    """Largest output difference between the official network and ours (reference and
    fast) carrying the same random weights, on a (2, 3, 64, 96) batch in fp32."""
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
    x, embedding = torch.rand(2, 3, 64, 96), torch.randn(2, OFFICIAL_TEXT_DIM)
    fast = TextPromptIR(config, impl="fast").eval()
    fast.load_state_dict(ours.state_dict())
    out = {}
    with torch.no_grad():
        want = official(x, embedding)
        for impl, net in (("reference", ours), ("fast", fast)):
            out[f"{impl}_max_abs_diff"] = (net(x, embedding) - want).abs().max().item()
    return out


def _randomized(model: torch.nn.Module) -> torch.nn.Module:
    """Weights moved off their initial values (norms, temperatures, biases), seeded."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("temperature"):
                p.copy_(0.2 + 3 * torch.rand(p.shape, generator=g))
            elif p.dim() == 1:
                p.add_(0.5 * torch.randn(p.shape, generator=g).to(p.device))
    return model


def _output_and_grads(model: torch.nn.Module, x: torch.Tensor, embedding: torch.Tensor):
    model.zero_grad(set_to_none=True)
    out = model(x, embedding)
    out.square().mean().backward()
    return out.detach(), torch.cat([p.grad.flatten() for p in model.parameters()])


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-12))


def _curve(cfg: dict[str, Any], device: torch.device, compile_it: bool, graph: bool) -> list[float]:
    """Losses of CURVE_STEPS fp32 training steps from the same seed and data."""
    run_cfg = {**cfg, "impl": resolve_impl("auto", device), "amp": False, "cuda_graph": graph, "compile": compile_it}
    step_fn, (lq, gt, embedding) = train_setup(run_cfg, device, cfg.get("curve_batch", 2))
    g = torch.Generator(device="cpu").manual_seed(1)
    losses = []
    for _ in range(CURVE_STEPS):
        batch = [torch.rand(t.shape, generator=g).to(device) for t in (lq, gt)]
        losses.append(step_fn(batch[0], batch[1], embedding).clone())  # a graph's loss is overwritten by the next replay
    return [float(v) for v in losses]


def run_check(cfg: dict[str, Any]) -> dict[str, Any]:
    """Correctness on the device, fp32 with TF32 off (put back afterwards): the device's path
    (``auto``) against the reference (outputs, gradients) on a ``check_batch`` x ``check_size``
    batch, the block-compiled network against eager, and the training curve with compile (and a
    CUDA graph on CUDA) against eager after CURVE_STEPS steps at ``curve_batch`` x ``train_size``^2.
    A check batch the curve's size compiles once for both."""
    device = torch.device(cfg["device"])
    tf32 = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        return _check(cfg, device)
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32


def _check(cfg: dict[str, Any], device: torch.device) -> dict[str, Any]:
    config = ModelConfig(text_dim=cfg["text_dim"], **cfg["net"])
    torch.manual_seed(0)
    reference = _randomized(TextPromptIR(config, impl="reference", device=device))
    path = "fast" if resolve_impl("auto", device) == "reference" else resolve_impl("auto", device)
    res: dict[str, Any] = {"device": str(device), "auto_impl": resolve_impl("auto", device)}
    h, w = cfg.get("check_size", (64, 96))
    batch = cfg.get("check_batch", 2)
    x, embedding = torch.rand(batch, 3, h, w, device=device), torch.randn(batch, cfg["text_dim"], device=device)
    out_r, g_r = _output_and_grads(reference, x, embedding)
    other = TextPromptIR(config, impl=path, device=device)
    other.load_state_dict(reference.state_dict())
    out_o, g_o = _output_and_grads(other, x, embedding)
    res[f"{path}_vs_reference"] = {"out_rel": _rel(out_o, out_r), "grad_rel": _rel(g_o, g_r)}
    compiled = TextPromptIR(config, impl=res["auto_impl"], device=device)
    compiled.load_state_dict(reference.state_dict())
    compile_blocks(compiled)
    t0 = time.perf_counter()
    out_c, g_c = _output_and_grads(compiled, x, embedding)
    res["compile_s"] = time.perf_counter() - t0
    res["compiled_vs_reference"] = {"out_rel": _rel(out_c, out_r), "grad_rel": _rel(g_c, g_r)}
    eager = _curve(cfg, device, compile_it=False, graph=False)
    variants = {"compiled": (True, False)} | ({"cuda_graph": (False, True), "compiled_cuda_graph": (True, True)}
                                              if device.type == "cuda" else {})
    res["curve"] = {"steps": CURVE_STEPS, "eager_last": eager[-1]}
    for name, (compile_it, graph) in variants.items():
        losses = _curve(cfg, device, compile_it, graph)
        res["curve"][name] = max(abs(a - b) for a, b in zip(losses, eager))
    res["ok"] = (res[f"{path}_vs_reference"]["out_rel"] <= LIMITS["path_rel"]
                 and res[f"{path}_vs_reference"]["grad_rel"] <= LIMITS["path_rel"]
                 and res["compiled_vs_reference"]["out_rel"] <= LIMITS["compile_rel"]
                 and res["compiled_vs_reference"]["grad_rel"] <= LIMITS["compile_rel"]
                 and all(v <= LIMITS["curve_abs"] for k, v in res["curve"].items() if k not in ("steps", "eager_last")))
    res["limits"] = LIMITS
    return res


def inductor_kernel_bytes(cache_dir: str | Path | None = None) -> dict[str, float]:
    """Bytes each Triton kernel inductor generated reads and writes, by kernel name, from the
    generated sources in the compile cache: inductor's own estimate (``kernel_num_gb``), written
    only when the kernels were compiled with ``TORCHINDUCTOR_BENCHMARK_KERNEL=1``. A name that
    two graphs use with different sizes is left out (not known)."""
    if cache_dir is None:
        cache_dir = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    if not cache_dir or not Path(cache_dir).is_dir():
        return {}
    found: dict[str, set[float]] = {}
    pattern = re.compile(r"'kernel_name': '(\w+)'.*?'kernel_num_gb': ([0-9.e+-]+)", re.S)
    for path in Path(cache_dir).rglob("*.py"):
        try:
            source = path.read_text(errors="replace")
        except OSError:
            continue
        if "kernel_num_gb" not in source:
            continue
        for name, gb in pattern.findall(source):
            found.setdefault(name, set()).add(float(gb) * 1e9)
    return {name: sizes.pop() for name, sizes in found.items() if len(sizes) == 1}


def kernel_table(rows: list[dict[str, Any]], unit: str) -> str:
    """The profile's top rows as markdown: share of the device time, time and calls per step, and
    the bytes moved (and the rate they imply) where known."""
    lines = [f"| # | {unit} | share | ms / step | calls / step | MB / call | GB/s |",
             "|---:|---|---:|---:|---:|---:|---:|"]
    for i, r in enumerate(rows, 1):
        name = r["name"] if len(r["name"]) <= 90 else r["name"][:87] + "..."
        mb = "" if r["bytes_per_call"] is None else f"{r['bytes_per_call'] / 1e6:.1f}"
        rate = "" if r["gb_per_s"] is None else f"{r['gb_per_s']:.0f}"
        lines.append(f"| {i} | `{name.replace('|', '/')}` | {100 * r['share']:.1f}% | {r['ms_per_step']:.3f} | "
                     f"{r['calls_per_step']:g} | {mb} | {rate} |")
    return "\n".join(lines)


def _top_rows(times: dict[str, list[float]], steps: int, kernel_bytes: dict[str, float]) -> list[dict[str, Any]]:
    """``times``: name -> [total µs, calls]. The TOP_KERNELS largest by total time."""
    total = sum(t for t, _ in times.values()) or 1.0
    rows = []
    for name, (us, calls) in sorted(times.items(), key=lambda kv: -kv[1][0])[:TOP_KERNELS]:
        nbytes = kernel_bytes.get(name)
        mean_s = us / calls / 1e6
        rows.append(dict(name=name, share=us / total, ms_per_step=us / steps / 1e3, calls_per_step=calls / steps,
                         mean_us=us / calls, bytes_per_call=nbytes,
                         gb_per_s=None if nbytes is None or mean_s <= 0 else nbytes / mean_s / 1e9))
    return rows


def run_profile(cfg: dict[str, Any]) -> dict[str, Any]:
    """torch.profiler over ``profile_steps`` training steps (compiled and CUDA-graphed as ``cfg``
    asks): on CUDA the kernels per step, the share of the wall time the GPU is busy, and the
    TOP_KERNELS kernels by GPU time with their share and, where inductor's estimate is in the
    compile cache, the bytes they move; on a CPU the operators by self CPU time."""
    device = torch.device(cfg["device"])
    batch = int(cfg["batch"])
    step_fn, inputs = train_setup(cfg, device, batch)
    for _ in range(cfg["warmup"]):
        step_fn(*inputs)
    sync(device)
    steps = cfg["profile_steps"]
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        t0 = time.perf_counter()
        for _ in range(steps):
            step_fn(*inputs)
        sync(device)
        wall_us = (time.perf_counter() - t0) * 1e6
    events = prof.events()
    graphed = type(step_fn).__name__ == "CudaGraphStep"
    times: dict[str, list[float]] = {}
    if device.type == "cuda":
        kernels = [e for e in events if e.device_type.name == "CUDA"]
        for e in kernels:
            entry = times.setdefault(e.name, [0.0, 0])
            entry[0] += e.time_range.elapsed_us()
            entry[1] += 1
        spans = sorted((e.time_range.start, e.time_range.end) for e in kernels)
        busy, end = 0.0, float("-inf")
        for start, stop in spans:  # union of kernel intervals
            if stop > end:
                busy += stop - max(start, end)
                end = stop
        rows = _top_rows(times, steps, inductor_kernel_bytes())
        launches = sum(1 for e in events if e.name in ("cudaLaunchKernel", "cuLaunchKernel", "cudaGraphLaunch"))
        return dict(batch=batch, cuda_graph=graphed, kernels_per_step=len(kernels) / steps,
                    launches_per_step=launches / steps, gpu_busy_share=busy / wall_us,
                    gpu_ms_per_step=sum(t for t, _ in times.values()) / steps / 1e3, step_ms=wall_us / steps / 1e3,
                    kernels=rows, table=kernel_table(rows, "kernel"))
    ops = [e for e in events if e.name.startswith("aten::")]
    for avg in prof.key_averages():
        if avg.self_cpu_time_total > 0:
            times[avg.key] = [avg.self_cpu_time_total, avg.count]
    rows = _top_rows(times, steps, {})
    return dict(batch=batch, cuda_graph=graphed, ops_per_step=len(ops) / steps, step_ms=wall_us / steps / 1e3,
                kernels=rows, table=kernel_table(rows, "operator (CPU self time)"))


def flops_per_image(cfg: dict[str, Any], size: int = 128) -> dict[str, float]:
    """Forward GFLOPs of one ``size``^2 image (matmuls and convolutions, as counted by
    torch.utils.flop_counter; a multiply-add is 2 FLOPs), per implementation."""
    out = {}
    for impl in cfg["impls"]:
        run_cfg = {**cfg, **cfg["impl_cfg"].get(impl, {}), "impl": impl, "compile": False}
        model = build_net(run_cfg, torch.device("cpu")).eval()
        counter = FlopCounterMode(display=False)
        with torch.inference_mode(), counter:
            model(torch.rand(1, 3, size, size), torch.randn(1, run_cfg["text_dim"]))
        out[impl] = counter.get_total_flops() / 1e9
    return out
