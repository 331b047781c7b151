"""The one GPU check, in one Python process so that the network compiles once and the compile
cache is shared by every section (and by the real run's own processes).

    python scripts/gpu_check.py --prepare /path/to/datasets [--official CLONE] [--text_ckpt DIR]
    python scripts/gpu_check.py                        # on the GPU machine, .gpu_data carried along
    python scripts/gpu_check.py --device cpu           # a dry run on a CPU: every section, tiny sizes

Sections, in this order; each writes ``<key>_<name>.json`` to ``--out`` ($OUT when set) after every
measurement and records its own elapsed time:

  a. correctness: the GPU path against the reference (fp32, TF32 off), compiled against eager,
     and the 50-step fp32 training curves with compile and the CUDA graph against eager;
  b. training images/s of the paper net at batch 6 and at the largest batch that fits, bf16, eager
     and compiled + CUDA graph, the official code (fp32, its defaults) beside ours when a clone was
     prepared, and compiled fp32 last;
  c. inference latency at 256², 512² and 1024x768 (bf16 and fp32, eager and compiled) and a
     CBSD68-like set (68 images of 320x480 and 480x320) scored as test.py does;
  d. a real run: ``torchrun train.py`` with the defaults (300 steps of the paper net), then
     ``test.py`` on Kodak24 and the demo test sets; its start-up, first-step, compile and fallback
     lines and the configuration its checkpoint records as trained (``speed``) go to the JSON;
  e. the profile of the graphed training step: the top 15 kernels by GPU time, their share and
     the bytes they move where inductor estimated them (also as e_profile.md).

Every section has a cap (CAPS, seconds on one H200); the time a section does not use passes to
the next ones, and the whole check stops within BUDGET_S. A section that fails or runs out of
time does not stop the others. The exit status is the number of sections that did not pass.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / ".gpu_data"
# Caps in seconds on one H200. The H200 log (docs/bench/h200_gpu_check_log.txt) gives only lower
# bounds: every section of the previous check ran past its cap, and a compiled training step took
# most of a 110 s bench.py run. Each cold compile of a training step (five block graphs, forward
# and backward) is budgeted at ~90 s (the target), an eager measurement at ~10 s.
CAPS = {"a": 100, "b": 160, "c": 40, "d": 90, "e": 25}
BUDGET_S = 420  # 7 minutes on the GPU, compile included
CPU_CAP_SCALE = 12  # a dry run on a 2-core CPU compiles about ten times slower
SECTIONS = {"a": "correctness", "b": "training", "c": "inference", "d": "real_run", "e": "profile"}
REAL_STEPS = 300


class OutOfTime(Exception):
    """A section ran past its limit."""


def _alarm(_signum, _frame):
    raise OutOfTime()


# ------------------------------------------------------------------ preparing the carried folder
def prepare(datasets: Path, official: Path | None, text_ckpt: Path, data: Path = DATA) -> None:
    """What the GPU machine cannot make itself (it has no network): BSD400 and Kodak24 from
    ``datasets``, the instruction embeddings restoration training needs (embeddings.pt, 0.5 MB: the
    encoder's 83 MB do not fit the transfer), and the official network's source (net/model.py) from
    a clone or a bare mirror of the official repository. Nothing of it is committed (.gitignore)."""
    from utils.errors import UserError
    from utils.text.embeddings import training_embeddings

    for name in ("BSD400", "Kodak24"):
        if not (datasets / name).is_dir():
            raise UserError(f"{datasets / name}: not found; pass the folder holding BSD400/ and Kodak24/")
    if not (text_ckpt / "labels.json").is_file():
        raise UserError(f"{text_ckpt}: no instruction encoder; run `python train.py --stage text` first or pass "
                        "--text_ckpt")
    shutil.rmtree(data, ignore_errors=True)
    shutil.copytree(datasets / "BSD400", data / "Train/Denoise")
    shutil.copytree(datasets / "Kodak24", data / "test/denoise/Kodak24")
    training_embeddings(text_ckpt)
    (data / "text_encoder").mkdir(parents=True)
    shutil.copy2(text_ckpt / "embeddings.pt", data / "text_encoder/embeddings.pt")
    if official is not None:
        target = data / "official/net"
        target.mkdir(parents=True)
        if (official / "net/model.py").is_file():
            shutil.copy2(official / "net/model.py", target / "model.py")
        else:  # a bare repository (git fetch / mirror): take the file from its HEAD
            source = subprocess.run(["git", f"--git-dir={official}", "show", "HEAD:net/model.py"],
                                    capture_output=True, text=True)
            if source.returncode != 0:
                raise UserError(f"{official}: neither a clone nor a git repository with net/model.py")
            (target / "model.py").write_text(source.stdout)
    size = sum(f.stat().st_size for f in data.rglob("*") if f.is_file())
    print(f"{data}: {size / 2**20:.1f} MiB (carry it to the GPU machine)")


# ------------------------------------------------------------------ sections' bookkeeping
class Section:
    """One section's JSON, rewritten after every measurement so that a cut section keeps its part."""

    def __init__(self, out: Path, key: str, limit: float) -> None:
        self.path = out / f"{key}_{SECTIONS[key]}.json"
        self.t0 = time.monotonic()
        self.deadline = self.t0 + limit
        self.data: dict[str, Any] = dict(section=key, name=SECTIONS[key], limit_s=round(limit, 1), status="running",
                                         items={})
        self.write()

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def write(self) -> None:
        self.data["elapsed_s"] = round(time.monotonic() - self.t0, 1)
        self.path.write_text(json.dumps(self.data, indent=1, default=str))

    def item(self, name: str, run: Callable[[], dict[str, Any]], need_s: float = 0.0) -> dict[str, Any] | None:
        """Run one measurement and record it with its elapsed time; an error is recorded and the
        section goes on; skipped when less than ``need_s`` seconds are left."""
        if self.left() < need_s:
            self.data["items"][name] = {"skipped": f"{self.left():.0f} s left, needs about {need_s:.0f} s"}
            self.write()
            return None
        t0 = time.monotonic()
        print(f"  {name} ...", flush=True)
        try:
            result = run()
        except OutOfTime:
            self.data["items"][name] = {"error": "out of time", "elapsed_s": round(time.monotonic() - t0, 1)}
            self.write()
            raise
        except Exception as e:  # one failed measurement must not stop the section
            line = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
            self.data["items"][name] = {"error": f"{type(e).__name__}: {line}",
                                        "elapsed_s": round(time.monotonic() - t0, 1)}
            traceback.print_exc(limit=3)
            self.write()
            _free_memory()
            if self.left() <= 0:
                raise OutOfTime() from None
            return None
        result = {**result, "elapsed_s": round(time.monotonic() - t0, 1)}
        self.data["items"][name] = result
        shown = {k: round(v, 4) if isinstance(v, float) else v for k, v in result.items()
                 if not isinstance(v, (list, dict)) and k != "table"}
        print(f"    {shown}", flush=True)
        self.write()
        _free_memory()
        return result


def _free_memory() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


# ------------------------------------------------------------------ the sections
class Check:
    """The shared state: the device, the configs of bench.py, the output folder, the compile cache."""

    def __init__(self, args: argparse.Namespace) -> None:
        import bench
        from options import bench_parser

        self.args, self.out, self.device = args, Path(args.out), args.device
        self.cuda = args.device == "cuda"
        self.official = DATA / "official" if (DATA / "official/net/model.py").is_file() else None
        preset = "paper" if self.cuda else "demo"
        bench_args = ["--device", args.device, "--preset", preset, "--impl", "auto", "--no_flops"]
        self.base = bench.base_config(bench_parser().parse_args(bench_args))
        # the device's own path (reference on CUDA); 10 timed steps: on the H200 ten graphed steps
        # lay within 0.3% of each other
        self.base.update(impl=self.base["impls"][0])
        self.base.update(train_size=128 if self.cuda else 32, train_steps=10 if self.cuda else 1,
                         warmup=2 if self.cuda else 1, repeats=10 if self.cuda else 1, profile_steps=5 if self.cuda else 1)
        self.official_cfg, self.official_note = None, None if self.official else "no clone prepared"
        if self.official is not None:
            from utils.errors import UserError

            try:
                ob = bench.base_config(bench_parser().parse_args(
                    ["--device", args.device, "--impl", "auto", "--official", str(self.official), "--no_flops"]))
                self.official_cfg = {**ob, **ob["impl_cfg"]["official"], "impl": "official", "kind": "train",
                                     **{k: self.base[k] for k in ("train_size", "train_steps", "warmup")}}
            except UserError as e:  # e.g. einops missing on the GPU machine
                self.official_note = str(e)
        self.batch = 6 if self.cuda else 2  # the paper's batch per GPU; a dry run's stand-in
        import torch

        from utils.runtime.device import allow_tf32

        # train.py's TF32 setting: it is part of the compiled graphs' cache key, so d reuses b's
        allow_tf32(torch.device(args.device))
        self.results: dict[str, Any] = {}

    def cfg(self, **kw: Any) -> dict[str, Any]:
        return {**self.base, **kw}

    # a. ----------------------------------------------------------------
    def correctness(self, sec: Section) -> None:
        from utils.bench.measure import run_check

        size = [128, 128] if self.cuda else [32, 32]  # the curve's size too: one compile for both
        r = sec.item("check", lambda: run_check(self.cfg(check_size=size, check_batch=2, curve_batch=2)))
        sec.data["ok"] = bool(r and r.get("ok"))

    # b. ----------------------------------------------------------------
    def training(self, sec: Section) -> None:
        """In the order of what matters most, as the cap may cut the last ones."""
        from utils.bench.measure import MAX_BATCHES, run_train

        b, cuda = self.batch, self.cuda
        low = "bf16" if cuda else "fp32"  # a CPU dry run computes in fp32
        largest = "max" if cuda else b  # a dry run stands in the same batch: one compile less on a CPU
        train = self.cfg(kind="train", amp=cuda)
        eager = sec.item(f"{low} eager, batch {b}", lambda: run_train({**train, "batch": b}))
        fast = sec.item(f"{low} compiled + CUDA graph, batch {b}",
                        lambda: run_train({**train, "compile": True, "cuda_graph": True, "batch": b}))
        at_most = None
        if cuda and fast and fast.get("total_peak_mb"):  # one compile at the batch that should fit, not one per try
            import torch

            total_mb = torch.cuda.get_device_properties(0).total_memory / 2**20
            at_most = max([B for B in MAX_BATCHES if B * fast["total_peak_mb"] / b <= 0.9 * total_mb] or [b])
        sec.data["largest_batch_estimate"] = at_most
        sec.item(f"{low} compiled + CUDA graph, largest batch",
                 lambda: run_train({**train, "compile": True, "cuda_graph": True, "batch": largest,
                                    "max_batch": at_most}), need_s=30 if cuda else 0)
        if self.official_cfg is not None:
            sec.item(f"official code, fp32 (its defaults), batch {b}", lambda: run_train({**self.official_cfg, "batch": b}))
        else:
            sec.data["official"] = self.official_note
        sec.item(f"fp32 eager, batch {b}", lambda: run_train({**train, "amp": False, "batch": b}))
        sec.item(f"{low} eager, largest batch", lambda: run_train({**train, "batch": largest}), need_s=20 if cuda else 0)
        sec.item(f"fp32 compiled + CUDA graph, batch {b} (TF32 on, as train.py)",
                 lambda: run_train({**train, "amp": False, "compile": True, "cuda_graph": True, "batch": b}),
                 need_s=45 if cuda else 0)
        if eager and fast:
            sec.data["compiled_over_eager"] = fast["images_per_s"] / eager["images_per_s"]

    # c. ----------------------------------------------------------------
    def inference(self, sec: Section) -> None:
        from utils.bench.measure import run_inference, run_inference_set

        cuda = self.cuda
        sizes = [[256, 256], [512, 512], [768, 1024]] if cuda else [[32, 32], [40, 48]]
        big = sizes[-1]
        infer = self.cfg(kind="infer")
        for amp in (True, False) if cuda else (False,):
            for size in sizes:
                sec.item(f"{'bf16' if amp else 'fp32'} eager {size[1]}x{size[0]}",
                         lambda size=size, amp=amp: run_inference({**infer, "amp": amp, "size": size}))
        sec.item(f"{'bf16' if cuda else 'fp32'} compiled {big[1]}x{big[0]}",
                 lambda: run_inference({**infer, "amp": cuda, "compile": True, "size": big}))
        shapes = [[320, 480], [480, 320]] if cuda else [[32, 48], [48, 32]]
        cbsd68 = [shapes[i % 2] for i in range(68 if cuda else 4)]  # test.py crops CBSD68 to these two shapes
        for compiled in (False, True):
            sec.item(f"CBSD68-like set, fp32 (test.py's default), {'compiled' if compiled else 'eager'}",
                     lambda compiled=compiled: run_inference_set({**infer, "compile": compiled, "sizes": cbsd68,
                                                                  "passes": 2}))
        if cuda:
            sec.item(f"fp32 compiled {big[1]}x{big[0]}",
                     lambda: run_inference({**infer, "compile": True, "size": big}), need_s=20)
            for size in sizes[:-1]:
                sec.item(f"bf16 compiled {size[1]}x{size[0]}",
                         lambda size=size: run_inference({**infer, "amp": True, "compile": True, "size": size}),
                         need_s=15)

    # d. ----------------------------------------------------------------
    def real_run(self, sec: Section, demo: subprocess.Popen, work: Path) -> None:
        """torchrun train.py with the defaults, then test.py; their output goes to d_real_run.log."""
        log = self.out / "d_real_run.log"
        remaining = demo.wait(timeout=max(sec.left(), 1))
        if remaining != 0:
            raise RuntimeError("utils.data.demo_data failed")
        train_root = work / "train"
        train_root.mkdir()
        (train_root / "Denoise").symlink_to(DATA / "Train/Denoise")
        for task in ("Derain", "Dehaze"):
            (train_root / task).symlink_to(work / "demo/Train" / task)
        (work / "test/denoise").mkdir(parents=True)
        (work / "test/denoise/Kodak24").symlink_to(DATA / "test/denoise/Kodak24")
        py = sys.executable
        train = [py, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1", "train.py",
                 *real_run_train_args(work, self.device)]
        ckpt = work / "ckpt/gpu_real/last.pt"
        tests = [[py, "test.py", "--ckpt", str(ckpt), "--test_root", str(work / "test"), "--mode", "denoise",
                  "--device", self.device, "--name", "kodak", "--output_dir", str(work / "out"), "--no_progress"],
                 [py, "test.py", "--ckpt", str(ckpt), "--test_root", str(work / "demo/test"), "--device",
                  self.device, "--name", "demo", "--output_dir", str(work / "out"), "--no_progress"]]
        with log.open("w") as f:
            for name, cmd in [("train", train), ("test_kodak24", tests[0]), ("test_demo", tests[1])]:
                sec.item(name, lambda cmd=cmd: _run_logged(cmd, f, sec.left()))
        text = log.read_text()
        picked = [line for line in text.splitlines()
                  if line.startswith(("speed:", "first step:", "torch.compile:", "note:", "stopped at", "done:"))
                  or ": PSNR" in line]
        sec.data["lines"] = picked
        if ckpt.is_file():  # what trained: the default, or what it fell back to (utils/train/fallback.py)
            import torch

            sec.data["trained_with"] = torch.load(ckpt, map_location="cpu", weights_only=True, mmap=True).get("speed")
        for name in ("kodak", "demo"):
            results = work / "out" / name / "results.json"
            if results.is_file():
                sec.data[f"{name}_results"] = json.loads(results.read_text())["sets"]

    # e. ----------------------------------------------------------------
    def profile(self, sec: Section) -> None:
        from utils.bench.measure import run_profile

        low = "bf16 compiled + CUDA graph" if self.cuda else "fp32 compiled"
        r = sec.item(f"{low}, batch {self.batch}",
                     lambda: run_profile(self.cfg(kind="profile", amp=self.cuda, compile=True, cuda_graph=True,
                                                  batch=self.batch)))
        if r and r.get("table"):
            busy = f"GPU busy {r['gpu_busy_share']:.1%} of " if "gpu_busy_share" in r else ""
            (self.out / "e_profile.md").write_text(
                f"Profile of the training step ({self.device}, batch {self.batch}, "
                f"{'CUDA graph' if r.get('cuda_graph') else 'no graph'}): {busy}{r['step_ms']:.1f} ms per step"
                f"\n\n{r['table']}\n")


def real_run_train_args(work: Path, device: str) -> list[str]:
    """train.py's options for section d: the defaults, on ``work``'s data (Denoise: BSD400, rain and
    haze: the demo set's), --val_every 0 (its --val_root, the demo test set, only has to exist: a
    preset may name one). The dry run (a CPU) trains the demo net, compiled as b compiled it, so
    that the cache is reused."""
    cuda = device == "cuda"
    args = ["--data_root", str(work / "train"), "--text_ckpt", str(DATA / "text_encoder"), "--device", device,
            "--max_steps", str(REAL_STEPS if cuda else 3), "--log_every", "50" if cuda else "1",
            "--num_workers", "8" if cuda else "1", "--val_every", "0", "--val_root", str(work / "demo/test"),
            "--save_every", "0", "--name", "gpu_real", "--log_dir", str(work / "logs"), "--no_progress",
            "--ckpt_dir", str(work / "ckpt"), "--compile_cache", os.environ["TORCHINDUCTOR_CACHE_DIR"]]
    if not cuda:
        args += ["--preset", "demo", "--patch_size", "32", "--batch_size", "2", "--precision", "fp32", "--compile"]
    return args


def _run_logged(cmd: list[str], log, limit: float) -> dict[str, Any]:
    """Run ``cmd`` (in its own process group, killed past ``limit`` seconds) with its output in ``log``."""
    log.write(f"$ {' '.join(cmd)}\n")
    log.flush()
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        rc = proc.wait(timeout=max(limit, 1))
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise OutOfTime() from None
    if rc != 0:
        raise RuntimeError(f"exit status {rc} (see d_real_run.log)")
    return dict(seconds=time.monotonic() - t0)


def machine(device: str) -> dict[str, Any]:
    """The machine record, with the compile settings this check ran under."""
    from utils.bench.machine import machine_info

    return {**machine_info(device), "compile_cache": os.environ.get("TORCHINDUCTOR_CACHE_DIR"),
            "benchmark_kernel": os.environ.get("TORCHINDUCTOR_BENCHMARK_KERNEL")}


def run_section(sec: Section, body: Callable[[Section], Any], alarm: bool) -> Section:
    """Run one section within its limit (``alarm``: stopped by SIGALRM; section d stops its own
    subprocess), record its status, write its JSON and free the GPU memory it held."""
    if alarm:
        signal.setitimer(signal.ITIMER_REAL, sec.data["limit_s"])
    try:
        body(sec)
        errors = [n for n, r in sec.data["items"].items() if "error" in r]
        sec.data["status"] = "failed" if errors or sec.data.get("ok") is False else "ok"
    except OutOfTime:
        sec.data["status"] = "out of time"
    except Exception as e:
        sec.data["status"] = f"failed: {type(e).__name__}: {str(e)[:200]}"
        traceback.print_exc(limit=5)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    sec.write()
    _free_memory()
    return sec


def run_check(args: argparse.Namespace) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="gpu_check."))
    # the shared compile cache, and inductor's estimate of each kernel's bytes (section e), set
    # before torch is imported so that every section and the real run compile alike
    os.environ.setdefault("TORCHINDUCTOR_BENCHMARK_KERNEL", "1")
    from utils.runtime.compile import use_compile_cache

    use_compile_cache(work / "compile_cache", "--work")
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        print("error: no CUDA device visible; run on a GPU machine, or --device cpu for a dry run", file=sys.stderr)
        return 2
    if not (DATA / "Train/Denoise").is_dir() or not (DATA / "text_encoder/embeddings.pt").is_file():
        print(f"error: {DATA} not found: run `python scripts/gpu_check.py --prepare <datasets>` and carry it",
              file=sys.stderr)
        return 2
    start = time.monotonic()
    scale = 1 if args.device == "cuda" else CPU_CAP_SCALE
    caps = {k: v * scale for k, v in CAPS.items() if k in args.sections}
    budget = args.budget or BUDGET_S * scale
    summary: dict[str, Any] = dict(machine=machine(args.device), budget_s=budget, caps_s=caps, sections={})
    print(json.dumps(summary["machine"]), flush=True)
    demo = subprocess.Popen([sys.executable, "-m", "utils.data.demo_data", "--out", str(work / "demo")], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # for d, made meanwhile
    check = Check(args)
    runs = {"a": check.correctness, "b": check.training, "c": check.inference,
            "d": lambda sec: check.real_run(sec, demo, work), "e": check.profile}
    signal.signal(signal.SIGALRM, _alarm)
    failed = 0
    keys = [k for k in SECTIONS if k in caps]
    for i, key in enumerate(keys):
        # the time earlier sections left unused passes on; later sections keep their caps
        limit = max(budget - (time.monotonic() - start) - sum(caps[k] for k in keys[i + 1:]), 10.0)
        print(f"\n=== {key}. {SECTIONS[key]} (limit {limit:.0f} s) ===", flush=True)
        sec = run_section(Section(out, key, limit), runs[key], alarm=key != "d")
        failed += sec.data["status"] != "ok"
        summary["sections"][key] = dict(status=sec.data["status"], elapsed_s=sec.data["elapsed_s"],
                                        limit_s=sec.data["limit_s"])
        summary["elapsed_s"] = round(time.monotonic() - start, 1)
        (out / "summary.json").write_text(json.dumps(summary, indent=1))
        print(f"--- {key}: {sec.data['status']} in {sec.data['elapsed_s']} s", flush=True)
    if demo.poll() is None:
        demo.kill()
    shutil.rmtree(work, ignore_errors=True)
    print(f"\n=== summary ({summary['elapsed_s']} s of {budget} s) ===")
    for key, s in summary["sections"].items():
        print(f"{key}. {SECTIONS[key]}: {s['status']} ({s['elapsed_s']} s, limit {s['limit_s']} s)")
    return failed


def main(argv: list[str] | None = None) -> int:
    from options import add_device_option
    from utils.runtime.device import DEVICE_CHOICES
    from utils.text.encoder_link import DEFAULT_TEXT_CKPT

    p = argparse.ArgumentParser(prog="scripts/gpu_check.py", description=__doc__.split("\n")[0])
    p.add_argument("--prepare", metavar="DATASETS", type=Path, default=None,
                   help="make .gpu_data from the folder holding BSD400/ and Kodak24/, then stop")
    p.add_argument("--official", type=Path, default=None,
                   help="with --prepare: a clone (or bare mirror) of github.com/MoTong-AI-studio/TextPromptIR")
    p.add_argument("--text_ckpt", type=Path, default=ROOT / DEFAULT_TEXT_CKPT,
                   help="with --prepare: the fine-tuned instruction encoder (default: ckpt/text_encoder)")
    add_device_option(p, default=os.environ.get("GPU_CHECK_DEVICE", "cuda"), choices=DEVICE_CHOICES[1:])
    p.add_argument("--out", default=os.environ.get("OUT") or str(ROOT / "output/gpu_check"))
    p.add_argument("--sections", default="abcde", help="which sections to run, e.g. abe")
    p.add_argument("--budget", type=float, default=None,
                   help=f"seconds for the whole check (default {BUDGET_S}; x{CPU_CAP_SCALE} on a CPU)")
    args = p.parse_args(argv)
    os.chdir(ROOT)
    sys.path.insert(0, str(ROOT))
    if args.prepare is not None:
        from utils.cli import cli_main

        return cli_main(lambda _: prepare(args.prepare, args.official, args.text_ckpt) or 0)
    return run_check(args)


if __name__ == "__main__":
    sys.exit(main())
