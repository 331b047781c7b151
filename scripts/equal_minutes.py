"""Quality per GPU-minute: the official TextPromptIR network and ours, each trained for the same
budget T of training-step time on the same data, seed and data pipeline, scored at T/4, T/2 and T.

    python scripts/equal_minutes.py --minutes 4 --official CLONE --data_root TRAIN_ROOT \\
        --denoise_root BSD400 --text_ckpt DIR --test_root data/demo/test \\
        --denoise_dirs Kodak24 McMaster --out $OUT            # on one GPU
    python scripts/equal_minutes.py --device cpu --minutes 0.1 --net demo --sections ours official spread \\
        ...                                                   # a dry run on a CPU, tiny sizes

Sections (``--sections``), one after the other, each written to ``--out`` as it is measured:

- ``official``: the official network from the user's clone (loaded as ``bench.py --official``
  loads it, ``utils/bench/official.py``), at the official code's own settings: fp32, eager,
  batch 6, AdamW at 2e-4, L1 loss. It runs in a process of its own (``--arm official``) on
  train.py's data pipeline (``utils.train.inputs.build_data``), with a warm-up and cosine schedule fitted to
  its own budget (``utils/train/budget.py``). Its text layers take 768 values: our encoder's
  embeddings, zero-padded.
- ``ours``: ``train.py --time_budget T --save_at ...`` at its defaults (on CUDA: compiled blocks,
  CUDA-graphed step, bf16; batch 6).
- ``spread``: the demo net trained with a few seeds (``--spread_seeds``) for the same steps, on
  the CPU, so that a difference can be told from seed noise.

Every checkpoint is scored as test.py scores (``find_test_sets`` and ``evaluate_set``, fp32, the
instruction route) on the sets of ``--test_root`` and ``--denoise_dirs`` at sigma 15/25/50: the
final ones first, so a cut run keeps what matters most. ``points.json`` holds the curve,
``runs.json`` each run's steps, images/s, compile and scoring time; ``docs/equal_minutes.png``
the plot of PSNR against minutes (when matplotlib is installed). ``--gpu_budget`` seconds bound
the whole script: a section or scoring that would not fit is skipped and recorded as skipped.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from utils.train import budget

ROOT = Path(__file__).resolve().parents[1]
FRACTIONS = (0.25, 0.5, 1.0)
DEMO_NET = ["--dim", "16", "--num_blocks", "1", "2", "2", "2", "--num_refinement_blocks", "1",
            "--heads", "1", "2", "4", "8"]
OFFICIAL_LR = 2e-4  # the official code's AdamW learning rate and batch (its train.py defaults)
OFFICIAL_BATCH = 6
LINES = ("first step:", "time budget", "speed:", "note:", "done:", "stopped at", "TextPromptIR:")


# ------------------------------------------------------------------ bookkeeping
class Record:
    """``points.json`` and ``runs.json`` in ``out``, rewritten after every measurement."""

    def __init__(self, out: Path, args: argparse.Namespace) -> None:
        self.out = out
        out.mkdir(parents=True, exist_ok=True)
        self.points: list[dict[str, Any]] = []
        self.runs: dict[str, Any] = dict(settings={k: (str(v) if isinstance(v, Path) else v)
                                                   for k, v in vars(args).items()})
        self.t0 = time.monotonic()
        self.failures: list[str] = []

    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    def point(self, **kw: Any) -> None:
        self.points.append(kw)
        shown = {k: v for k, v in kw.items() if k != "sets"}
        print(f"  point {shown}: " + ", ".join(f"{s['label']} {s['psnr']:.2f}" for s in kw.get("sets", [])), flush=True)
        (self.out / "points.json").write_text(json.dumps(self.points, indent=1))

    def fail(self, name: str, line: str) -> None:
        """A section that measured nothing: one line on the screen, kept in runs.json, and the
        script's exit status becomes 1."""
        self.failures.append(f"{name}: {line}")
        print(f"{name}: FAILED: {line}", file=sys.stderr, flush=True)
        self.run(name, failed=line)

    def run(self, name: str, **kw: Any) -> None:
        self.runs.setdefault(name, {}).update(kw)
        self.runs["elapsed_s"] = round(self.elapsed(), 1)
        (self.out / "runs.json").write_text(json.dumps(self.runs, indent=1, default=str))


def run_logged(cmd: list[str], log: Path, limit_s: float) -> tuple[int, list[str], float]:
    """Run ``cmd`` (killed past ``limit_s``), its output in ``log``; its exit status, the lines of
    interest (``LINES``) and its seconds."""
    t0 = time.monotonic()
    with log.open("w") as f:
        f.write("$ " + " ".join(cmd) + "\n")
        f.flush()
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            rc = proc.wait(timeout=max(limit_s, 1))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()
            rc = 124
    lines = [line for line in log.read_text().splitlines() if line.startswith(LINES) or "error" in line.lower()]
    return rc, lines, time.monotonic() - t0


def check_training(rec: Record, name: str, rc: int, log: Path) -> bool:
    """True when a training run ended well; else its failure, in one line naming its log."""
    if rc == 0:
        return True
    text = [line.strip() for line in log.read_text(errors="replace").splitlines()[1:] if line.strip()]
    errors = [line for line in text if "error" in line.lower()]
    last = (errors or text or ["no output"])[-1][:300]
    why = "killed at its time limit" if rc == 124 else f"exit {rc}"
    rec.fail(name, f"training failed ({why}): {last} (whole output: {log})")
    return False


def train_common(args: argparse.Namespace, ckpt_dir: Path, name: str, seed: int) -> list[str]:
    """The options both networks' runs share: data, seed, text encoder, folders."""
    common = ["--data_root", str(args.data_root), "--text_ckpt", str(args.text_ckpt), "--seed", str(seed),
              "--device", args.device, "--ckpt_dir", str(ckpt_dir), "--log_dir", str(ckpt_dir / "logs"),
              "--name", name, "--val_every", "0", "--save_every", "0", "--no_progress", "--overwrite",
              "--num_workers", str(args.num_workers), "--batch_size", str(OFFICIAL_BATCH),
              "--log_every", str(args.log_every)]
    if args.denoise_root:
        common += ["--denoise_root", str(args.denoise_root)]
    if args.net == "demo":
        common += DEMO_NET + ["--patch_size", str(args.patch_size)]
    return common + shlex.split(args.train_args)


# ------------------------------------------------------------------ scoring
def test_sets(args: argparse.Namespace) -> list:
    from utils.eval.benchmarks import find_test_sets

    sets, _ = find_test_sets(args.test_root, "all", denoise_dirs=args.denoise_dirs)
    return sets


def score_ours(ckpt: Path, sets: list, device: str) -> list[dict[str, Any]]:
    """Our checkpoint as test.py scores it: fp32, the instruction route, each task's stored default."""
    import torch

    import test
    from utils.eval.evaluate import evaluate_set
    from utils.runtime.inference import load_for_inference

    model, ck, dev = load_for_inference(ckpt, device, "auto", "fp32")
    how = argparse.Namespace(instruction=None, ckpt=str(ckpt), text_ckpt=None)
    text = test.task_embeddings(how, ck, {s.task for s in sets}, model.config.text_dim)
    out = [evaluate_set(model, s, text[s.task], dev, progress=False)[0].summary() for s in sets]
    del model
    torch.cuda.empty_cache() if torch.cuda.is_available() else None
    return out


def score_official(repo: Path, ckpt: Path, sets: list, device: str) -> list[dict[str, Any]]:
    """The official network's checkpoint, scored as ours (fp32, the same per-task instructions, padded)."""
    import torch

    from utils.bench.official import load_official_model
    from utils.eval.evaluate import evaluate_set

    ck = torch.load(ckpt, map_location="cpu", weights_only=True)
    model = load_official_model(repo).to(device)
    model.load_state_dict(ck["model"])
    dev = torch.device(device)
    out = [evaluate_set(model, s, ck["val_text"][s.task], dev, progress=False)[0].summary() for s in sets]
    del model
    return out


def score_run(rec: Record, arm: str, ckpts: list[Path], scorer, sets: list, args: argparse.Namespace) -> None:
    """Score the run's fraction checkpoints, the last first; one point each, as soon as measured."""
    import torch

    for path in sorted(ckpts, key=lambda p: -float(p.stem.split("_", 1)[1])):
        left = args.gpu_budget - rec.elapsed()
        if left < args.score_s:
            rec.run(arm, **{f"score_{path.stem}": f"skipped: {left:.0f} s left, a scoring needs ~{args.score_s:.0f} s"})
            continue
        ck = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        t0 = time.monotonic()
        summaries = scorer(path, sets, args.device)
        budget = ck.get("budget") or {}
        rec.point(arm=arm, fraction=float(path.stem.split("_", 1)[1]), step=int(ck["step"]),
                  minutes=round(float(budget.get("trained_s", 0.0)) / 60, 4), sets=summaries,
                  score_s=round(time.monotonic() - t0, 1))


# ------------------------------------------------------------------ the official arm (its own process)
@dataclasses.dataclass
class OfficialRun:
    """The official network's timed run at its own settings: its model and AdamW, the training
    bank's embeddings zero-padded to its 768 text values, train.py's data pipeline, the time
    budget's plan and clock (``utils/train/budget.py``), and how far it has come."""

    targs: argparse.Namespace  # train.py's options, for its data pipeline
    device: torch.device
    run_dir: Path
    model: torch.nn.Module
    opt: torch.optim.Optimizer
    sched: Any
    table: torch.Tensor  # (N, 768): the bank's embeddings, padded
    val_text: dict[str, torch.Tensor]  # {task: (768,)}
    loader: Any
    sampler: Any
    budget: budget.Budget
    clock: budget.TrainClock
    step: int = 0
    epoch: int = 0
    measure_from: float = 0.0  # the clock when the step-time measurement began
    at: dict[float, int] = dataclasses.field(default_factory=dict)  # {fraction: its step}, once planned
    saved: set[float] = dataclasses.field(default_factory=set)

    def sync(self) -> None:
        import torch

        if self.device.type == "cuda":
            torch.cuda.synchronize()

    def keep(self, fraction: float) -> None:
        """``at_<fraction>.pt``: the state_dict, step, padded validation embeddings and budget, its
        writing timed apart."""
        import torch

        from utils.train import budget

        self.saved.add(fraction)
        t0 = time.perf_counter()
        self.clock.pause()
        torch.save(dict(model=self.model.state_dict(), step=self.step, val_text=self.val_text,
                        budget={**self.budget.to_dict(), "trained_s": self.clock.elapsed()}),
                   self.run_dir / budget.fraction_name(fraction))
        self.clock.add_apart("saving", time.perf_counter() - t0)
        self.clock.start()


def start_official(args: argparse.Namespace) -> OfficialRun:
    """The official run, ready for its first step: train.py's options, text and data for ``args``,
    the network from the clone, AdamW at its learning rate, the measuring scheduler."""
    import torch

    from options import train_options
    from utils.bench.official import OFFICIAL_TEXT_DIM, load_official_model
    from utils.train import budget, dist
    from utils.train.inputs import build_data, load_text

    ckpt_dir = Path(args.work) / "ckpt"
    targs = train_options(train_common(args, ckpt_dir, "official", args.seed)
                          + ["--time_budget", str(args.minutes), "--precision", "fp32", "--eager"])
    dist_info = dist.setup(targs.device)
    torch.manual_seed(targs.seed)
    run_dir = ckpt_dir / "official"
    run_dir.mkdir(parents=True, exist_ok=True)
    table, rows, val_text, _ = load_text(targs, dist_info, run_dir)
    pad = OFFICIAL_TEXT_DIM - table.shape[1]
    table = torch.nn.functional.pad(table, (0, pad)).to(dist_info.device)  # (N, 768)
    val_text = {k: torch.nn.functional.pad(v, (0, pad)) for k, v in val_text.items()}
    _, loader, sampler, _ = build_data(targs, dist_info, rows)
    model = load_official_model(args.official).to(dist_info.device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=OFFICIAL_LR)
    return OfficialRun(targs=targs, device=dist_info.device, run_dir=run_dir, model=model, opt=opt,
                       sched=budget.measuring_scheduler(opt), table=table, val_text=val_text, loader=loader,
                       sampler=sampler, budget=budget.Budget(args.minutes, targs.warmup_epochs / targs.epochs),
                       clock=budget.TrainClock())


def official_step(run: OfficialRun, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """One optimiser step of the L1 loss on ``batch``; the loss (not synchronised)."""
    import torch

    lq, gt = batch["lq"].to(run.device), batch["gt"].to(run.device)
    text = run.table[batch["instruction_idx"].to(run.device)]
    loss = torch.nn.functional.l1_loss(run.model(lq, text), gt)
    run.opt.zero_grad(set_to_none=True)
    loss.backward()
    run.opt.step()
    run.sched.step()
    run.step += 1
    return loss


def time_official_step(run: OfficialRun, t0: float) -> None:
    """The first step (begun at ``t0``) is timed apart; the steps after ``MEASURE_SKIP`` more are
    measured, and then the schedule and the fractions' steps are planned for the budget."""
    from utils.train import budget

    if run.step == 1:
        run.sync()
        run.clock.add_apart("first step", time.perf_counter() - t0)
        run.clock.start()
    if run.budget.planned or run.step not in (1 + budget.MEASURE_SKIP, 1 + budget.MEASURE_SKIP + budget.MEASURE_STEPS):
        return
    run.sync()
    if run.step == 1 + budget.MEASURE_SKIP:
        run.measure_from = run.clock.elapsed()
        return
    time_budget = run.budget
    now = run.clock.elapsed()
    budget.plan_steps(time_budget, run.step, now, (now - run.measure_from) / budget.MEASURE_STEPS)
    run.sched = budget.planned_scheduler(run.opt, time_budget, run.step)
    run.at = budget.fraction_steps(list(FRACTIONS), time_budget.total_steps)
    print(f"time budget {time_budget.minutes:g} min: {time_budget.step_s * 1e3:.1f} ms per step; schedule "
          f"planned for {time_budget.total_steps} steps (warm-up {time_budget.warmup_steps})", flush=True)


def official_stop(run: OfficialRun, loss: torch.Tensor) -> budget.StopReason | None:
    """Why the run stops after this step: the time spent (read as train.py reads it, every --log_every
    steps on CUDA), the planned steps done, or None; a non-finite loss is an error."""
    import torch

    from utils.train.budget import StopReason

    stop = None
    if run.step % run.targs.log_every == 0 or run.device.type != "cuda":
        run.sync()
        if not torch.isfinite(loss):
            raise RuntimeError(f"the official network's loss became {loss.item()} at step {run.step}")
        if run.clock.elapsed() >= run.budget.budget_s:
            stop = StopReason.TIME
    if run.budget.planned and run.step >= run.budget.total_steps:
        stop = StopReason.PLAN
    return stop


def train_official(run: OfficialRun) -> budget.StopReason:
    """Train until the budget or the plan ends, keeping each fraction's checkpoint as its step is
    reached (the last one also when the time runs out first); why it stopped."""
    stop = None
    while stop is None:
        run.sampler.set_epoch(run.epoch)
        for batch in run.loader:
            t0 = time.perf_counter()
            loss = official_step(run, batch)
            time_official_step(run, t0)
            stop = official_stop(run, loss)
            for fraction, s in run.at.items():
                if fraction not in run.saved and (run.step >= s or (stop and fraction == 1.0)):
                    run.keep(fraction)
            if stop:
                break
        run.epoch += 1
    run.sync()
    run.clock.pause()
    return stop


def official_arm(args: argparse.Namespace) -> int:
    """Train the official network for ``--minutes`` of training steps at its own settings on train.py's
    data pipeline, keeping ``at_<f>.pt`` (its state_dict, step, budget) at each fraction."""
    run = start_official(args)
    stop = train_official(run)
    time_budget, clock, images = run.budget, run.clock, run.step * OFFICIAL_BATCH
    print(f"time budget {time_budget.minutes:g} min: step {run.step} of the {time_budget.total_steps} planned "
          f"({stop.value}), "
          f"epoch {run.epoch}, {images} images seen; {clock.elapsed():.1f} s in training steps, "
          f"{images / max(clock.elapsed(), 1e-9):.1f} images/s; timed apart: "
          + ", ".join(f"{k} {v:.1f} s" for k, v in clock.apart_s.items()), flush=True)
    return 0


# ------------------------------------------------------------------ sections
def section_official(rec: Record, args: argparse.Namespace, sets: list) -> None:
    from utils.bench.official import check_official_repo
    from utils.errors import UserError

    if args.official is None:
        rec.run("official", skipped="no --official clone given")
        print("official: skipped (no --official clone given)")
        return
    try:
        check_official_repo(args.official)
    except UserError as e:
        rec.run("official", skipped=str(e))
        print(f"official: skipped ({e})")
        return
    cmd = [sys.executable, str(Path(__file__)), *sys.argv[1:], "--arm", "official"]
    log = Path(args.out) / "official_train.log"
    rc, lines, seconds = run_logged(cmd, log, args.minutes * 60 + args.startup_s + args.gpu_budget - rec.elapsed())
    rec.run("official", rc=rc, seconds=round(seconds, 1), lines=lines)
    ckpts = sorted((Path(args.work) / "ckpt/official").glob("at_*.pt"))
    if check_training(rec, "official", rc, log) and not ckpts:
        rec.fail("official", f"training wrote no at_*.pt to score (whole output: {log})")
    score_run(rec, "official", ckpts, lambda p, s, d: score_official(args.official, p, s, d), sets, args)


def section_ours(rec: Record, args: argparse.Namespace, sets: list) -> None:
    ckpt_dir = Path(args.work) / "ckpt"
    cmd = [sys.executable, "train.py", *train_common(args, ckpt_dir, "ours", args.seed), "--time_budget",
           str(args.minutes), "--save_at", *map(str, FRACTIONS)]
    log = Path(args.out) / "ours_train.log"
    rc, lines, seconds = run_logged(cmd, log, args.minutes * 60 + args.startup_s + args.gpu_budget - rec.elapsed())
    rec.run("ours", rc=rc, seconds=round(seconds, 1), lines=lines)
    ckpts = sorted((ckpt_dir / "ours").glob("at_*.pt"))
    if check_training(rec, "ours", rc, log) and not ckpts:
        rec.fail("ours", f"training wrote no at_*.pt to score (whole output: {log})")
    score_run(rec, "ours", ckpts, score_ours, sets, args)


def section_spread(rec: Record, args: argparse.Namespace, sets: list) -> None:
    """The demo net on the CPU, the same steps for each seed (``--spread_steps``): the seed noise."""
    ckpt_dir = Path(args.work) / "ckpt"
    for seed in args.spread_seeds:
        name = f"seed{seed}"
        cmd = [sys.executable, "train.py", "--preset", "demo", "--device", "cpu", "--seed", str(seed),
               "--data_root", str(args.data_root), "--text_ckpt", str(args.text_ckpt), "--ckpt_dir", str(ckpt_dir),
               "--log_dir", str(ckpt_dir / "logs"), "--name", name, "--val_every", "0", "--no_progress",
               "--overwrite", "--epochs", "1", "--warmup_epochs", "0", "--max_steps", str(args.spread_steps),
               "--patch_size", str(args.patch_size), *shlex.split(args.spread_args)]
        log = Path(args.out) / f"spread_{name}.log"
        rc, lines, seconds = run_logged(cmd, log, args.gpu_budget)
        rec.run(f"spread_{name}", rc=rc, seconds=round(seconds, 1), lines=lines)
        path = ckpt_dir / name / "last.pt"
        if check_training(rec, f"spread_{name}", rc, log) and path.is_file():
            t0 = time.monotonic()
            rec.point(arm="spread", seed=seed, step=args.spread_steps, sets=score_ours(path, sets, "cpu"),
                      score_s=round(time.monotonic() - t0, 1))
    spread: dict[str, dict[str, float]] = {}
    for p in (p for p in rec.points if p["arm"] == "spread"):
        for s in p["sets"]:
            spread.setdefault(s["label"], {})[str(p["seed"])] = s["psnr"]
    rec.run("spread", psnr_by_set={k: dict(v, range=max(v.values()) - min(v.values())) for k, v in spread.items()})


def plot(rec: Record, label: str, path: Path) -> str:
    """PSNR on ``label`` against training minutes, one curve per network; a note if it cannot."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed: no plot"
    fig, ax = plt.subplots(figsize=(5, 3.5))
    drawn = 0
    for arm in ("official", "ours"):
        pts = sorted((p["minutes"], s["psnr"]) for p in rec.points if p["arm"] == arm for s in p["sets"]
                     if s["label"] == label)
        if pts:
            ax.plot(*zip(*pts), marker="o", label=arm)
            drawn += 1
    if not drawn:
        plt.close(fig)
        return f"no points on {label}: no plot"
    ax.set(xlabel="training minutes (compile and scoring apart)", ylabel=f"PSNR on {label} (dB)")
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return f"plot: {path}"


def build_parser() -> argparse.ArgumentParser:
    from options import MAX_PATCH_SIZE, MAX_SEED, MAX_TIME_BUDGET_MIN, add_device_option
    from utils.cli import (
        ArgumentParser,
        float_in,
        int_in,
        non_negative_float,
        non_negative_int,
        positive_float,
        positive_int,
    )
    from utils.runtime.device import DEVICE_CHOICES
    from utils.text.encoder_link import DEFAULT_TEXT_CKPT

    seed = int_in(0, MAX_SEED)
    p = ArgumentParser(prog="scripts/equal_minutes.py", description=__doc__.split("\n")[0])
    p.add_argument("--minutes", type=float_in(0.0, MAX_TIME_BUDGET_MIN, low_open=True), default=4.0,
                   help="the training budget T of each network")
    p.add_argument("--official", type=Path, default=None, help="a clone of github.com/MoTong-AI-studio/TextPromptIR")
    p.add_argument("--data_root", type=Path, default=ROOT / "data/demo/Train")
    p.add_argument("--denoise_root", type=Path, default=None, help="clean photos to denoise (e.g. BSD400)")
    p.add_argument("--text_ckpt", type=Path, default=ROOT / DEFAULT_TEXT_CKPT)
    p.add_argument("--test_root", type=Path, default=ROOT / "data/demo/test")
    p.add_argument("--denoise_dirs", type=Path, nargs="*", default=[], help="e.g. Kodak24 McMaster")
    add_device_option(p, default="cuda", choices=DEVICE_CHOICES[1:])
    p.add_argument("--net", choices=("paper", "demo"), default="paper", help="demo: the small net, for a dry run")
    p.add_argument("--patch_size", type=int_in(8, MAX_PATCH_SIZE), default=128)
    p.add_argument("--num_workers", type=non_negative_int, default=8)
    p.add_argument("--log_every", type=positive_int, default=20)
    p.add_argument("--seed", type=seed, default=0)
    p.add_argument("--sections", nargs="+", choices=("official", "ours", "spread", "plot"),
                   default=["official", "ours", "plot"])
    p.add_argument("--spread_seeds", type=seed, nargs="+", default=[0, 1, 2])
    p.add_argument("--spread_steps", type=positive_int, default=200)
    p.add_argument("--spread_args", default="", help="more train.py options for the seed runs, one string")
    p.add_argument("--train_args", default="", help="more train.py options for both timed runs, one string")
    p.add_argument("--gpu_budget", type=positive_float, default=600.0, help="seconds for the whole script")
    p.add_argument("--score_s", type=non_negative_float, default=20.0, help="seconds one scoring needs at least")
    p.add_argument("--startup_s", type=non_negative_float, default=180.0,
                   help="a training run's start-up and compile allowance")
    p.add_argument("--out", type=Path, default=Path(os.environ.get("OUT") or ROOT / "output/equal_minutes"))
    p.add_argument("--work", type=Path, default=None, help="checkpoints (default: <out>/work)")
    p.add_argument("--plot", type=Path, default=ROOT / "docs/equal_minutes.png")
    p.add_argument("--plot_set", default="Kodak24 σ=25", help="the set the plot and the per-step line show")
    p.add_argument("--arm", choices=("official",), default=None, help=argparse.SUPPRESS)
    return p


def run_sections(argv: list[str] | None) -> int:
    """Each section of ``--sections`` in turn, then the plot and the per-step line; 1 when a section failed."""
    args = build_parser().parse_args(argv)
    args.work = args.work or args.out / "work"
    os.chdir(ROOT)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.arm == "official":
        return official_arm(args)
    rec = Record(args.out, args)
    from utils.bench.machine import machine_info

    rec.run("machine", **machine_info(args.device))
    sets = test_sets(args)
    print(f"scoring sets: {', '.join(s.label for s in sets)}", flush=True)
    for name in args.sections:
        if name == "plot":
            continue
        print(f"\n=== {name} ({rec.elapsed():.0f} s in) ===", flush=True)
        t0 = time.monotonic()
        {"official": section_official, "ours": section_ours, "spread": section_spread}[name](rec, args, sets)
        rec.run(name, section_s=round(time.monotonic() - t0, 1))
    if "plot" in args.sections:
        note = plot(rec, args.plot_set, args.plot)
        rec.run("plot", note=note)
        print(note)
    summary = per_step(rec, args.plot_set)
    if summary:
        rec.run("per_step", **summary)
        print(f"per step: {summary}")
    print(f"\n{len(rec.points)} points in {args.out / 'points.json'}; {rec.elapsed():.0f} s in all")
    if rec.failures:
        print(f"failed: {', '.join(f.split(':')[0] for f in rec.failures)} (see the lines above)", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    sys.path.insert(0, str(ROOT))
    from utils.cli import cli_main

    return cli_main(run_sections, argv)


def per_step(rec: Record, label: str) -> dict[str, Any] | None:
    """Ours at the kept checkpoint nearest the official run's last step, against the official at its end."""
    def psnr(p: dict[str, Any]) -> float | None:
        return next((s["psnr"] for s in p["sets"] if s["label"] == label), None)

    official = [p for p in rec.points if p["arm"] == "official" and p["fraction"] == 1.0]
    ours = [p for p in rec.points if p["arm"] == "ours"]
    if not official or not ours:
        return None
    end = official[0]
    near = min(ours, key=lambda p: abs(p["step"] - end["step"]))
    return dict(set=label, official_step=end["step"], official_psnr=psnr(end), ours_step=near["step"],
                ours_psnr=psnr(near), note="ours' nearest kept checkpoint; its schedule had not ended there")


if __name__ == "__main__":
    sys.exit(main())
