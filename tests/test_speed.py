"""The speed settings of a run (compile, CUDA graph, precision, DDP) on each device, with the GPU
mocked; fp16 with a gradient scaler; the per-save check without autograd or recompiles; the
compile cache; the first-step log line."""
from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import train
from net.model import TextPromptIR
from tests.conftest import ROOT
from tests.test_train import base_args
from tests.test_train_step import SMALL
from utils.runtime import device as dev
from utils.runtime.compile import compile_blocks, default_compile_cache
from utils.train.speed import speed_settings
from utils.train.step import TrainStep, finite_output, make_optimizer

CPU, CUDA = torch.device("cpu"), torch.device("cuda", 0)


@pytest.fixture
def gpu(monkeypatch):
    """A mocked CUDA GPU of a given compute capability: ``gpu(9, 0)``."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)

    def set_capability(major: int, minor: int) -> None:
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (major, minor))
    return set_capability


@pytest.mark.parametrize("capability, expected", [((9, 0), "bf16"), ((8, 0), "bf16"), ((7, 5), "fp16"),
                                                  ((7, 0), "fp16"), ((6, 1), "fp32")])
def test_auto_precision_on_a_gpu_follows_its_compute_capability(gpu, capability, expected):
    gpu(*capability)
    assert dev.resolve_precision(CUDA, "auto")[0] == expected
    assert speed_settings(CUDA, 1).precision == expected


def test_explicit_precisions_on_a_gpu(gpu):
    gpu(7, 5)  # a T4: fp16 tensor cores, no bf16
    assert dev.resolve_precision(CUDA, "bf16") == ("fp32", "--precision bf16, but compute capability 7.5 has no "
                                                           "bf16 tensor cores")
    assert dev.resolve_precision(CUDA, "fp16")[0] == "fp16"
    assert dev.resolve_precision(CUDA, "fp32")[0] == "fp32"
    gpu(9, 0)
    assert dev.resolve_precision(CUDA, "bf16")[0] == "bf16" and dev.resolve_precision(CUDA, "fp16")[0] == "fp16"


def test_on_a_cpu_precision_is_what_it_was(monkeypatch):
    assert dev.resolve_precision(CPU, "auto")[0] == "fp32" and dev.resolve_precision(CPU, "fp32")[0] == "fp32"
    assert dev.resolve_precision(CPU, "fp16")[0] == "fp32"  # fp16 autocast is for CUDA GPUs
    monkeypatch.setattr(dev, "cpu_has_bf16", lambda: True)
    assert dev.resolve_precision(CPU, "bf16")[0] == "bf16"
    monkeypatch.setattr(dev, "cpu_has_bf16", lambda: False)
    assert dev.resolve_precision(CPU, "bf16")[0] == "fp32"  # emulated bf16 would be slower: stays fp32


def test_on_a_cpu_nothing_is_turned_on_by_default():
    settings = speed_settings(CPU, 1)
    assert (settings.compile, settings.cuda_graph, settings.precision, settings.ddp, settings.notes) == (False, False, "fp32", False, ())
    assert settings.line(8, CPU) == ("speed: 1 process, eager blocks (on a CPU only with --compile), step not graphed "
                                 "(needs a CUDA GPU), fp32 (auto: fp32 on a CPU); global batch 8 (--batch_size 8 "
                                 "per process x 1)")
    assert speed_settings(CPU, 1, compile_requested=True).compile  # compiling on a CPU stays possible
    asked = speed_settings(CPU, 2, cuda_graph_requested=True)
    assert not asked.cuda_graph and asked.notes == ("note: --cuda_graph needs one CUDA GPU; training without it",)


def test_one_gpu_compiles_and_graphs_by_default_and_eager_opts_out(gpu):
    gpu(9, 0)
    settings = speed_settings(CUDA, 1)
    assert (settings.compile, settings.cuda_graph, settings.precision, settings.ddp) == (True, True, "bf16", False)
    assert settings.line(6, CUDA) == (
        "speed: 1 process, compiled blocks (default on CUDA; --eager turns it off), CUDA-graphed step (default on "
        "one GPU; --eager turns it off), bf16 autocast (auto: compute capability 9.0 computes bf16 natively); "
        "global batch 6 (--batch_size 6 per GPU x 1)")
    eager = speed_settings(CUDA, 1, eager=True)
    assert (eager.compile, eager.cuda_graph, eager.precision) == (False, False, "bf16")
    only_graph = speed_settings(CUDA, 1, cuda_graph_requested=True, eager=True)  # an explicit flag still applies
    assert (only_graph.compile, only_graph.cuda_graph) == (False, True)


def test_several_gpus_use_ddp_and_compiled_blocks_without_a_whole_step_graph(gpu):
    gpu(8, 0)
    settings = speed_settings(CUDA, 8)
    assert (settings.compile, settings.cuda_graph, settings.ddp, settings.notes) == (True, False, True, ())
    line = settings.line(6, CUDA)
    assert line.startswith("speed: DDP over 8 processes, compiled blocks")
    assert "step not graphed (not under DDP" in line and line.endswith("global batch 48 (--batch_size 6 per GPU x 8)")
    assert speed_settings(CUDA, 8, cuda_graph_requested=True).notes == (
        "note: --cuda_graph needs one GPU, not DDP; training without it",)


def test_fp16_on_an_older_gpu_trains_compiled_without_the_graph(gpu):
    gpu(7, 0)  # a V100
    settings = speed_settings(CUDA, 1)
    assert (settings.compile, settings.cuda_graph, settings.precision) == (True, False, "fp16")
    assert "step not graphed (not with fp16: its gradient scaler is not captured)" in settings.line(6, CUDA)
    assert "fp16 autocast with a gradient scaler (auto: compute capability 7.0 has fp16" in settings.line(6, CUDA)
    assert speed_settings(CUDA, 1, cuda_graph_requested=True).notes == (
        "note: --cuda_graph does not combine with fp16's gradient scaler; training without it",)


def test_fp16_trains_with_a_gradient_scaler_that_skips_overflowing_steps():
    torch.manual_seed(0)
    model = TextPromptIR(SMALL)
    step = TrainStep(model, make_optimizer(model, 1e-3, 0.01, CPU), CPU, "fp16", grad_clip=1.0)
    assert isinstance(step.scaler, torch.amp.GradScaler)
    g = torch.Generator().manual_seed(1)
    lq, gt, text = torch.rand(2, 3, 32, 32, generator=g), torch.rand(2, 3, 32, 32, generator=g), torch.randn(2, 16)
    before = [p.detach().clone() for p in model.parameters()]
    assert torch.isfinite(step(lq, gt, text))
    assert any(not torch.equal(a, p) for a, p in zip(before, model.parameters()))  # it trained
    step.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**100)  # fp16 gradients overflow at this scale
    before = [p.detach().clone() for p in model.parameters()]
    step(lq, gt, text)
    assert all(torch.equal(a, p) for a, p in zip(before, model.parameters()))  # the step was skipped
    assert step.scaler.get_scale() == 2.0**99  # and the scale lowered
    with pytest.raises(ValueError):
        TrainStep(model, make_optimizer(model, 1e-3, 0.01, CPU), CPU, "auto")  # only resolved precisions


def test_the_save_check_builds_no_autograd_graph_and_compiles_nothing():
    from torch._dynamo.utils import counters

    torch._dynamo.reset()  # graphs compiled by other tests would hide the first compile
    torch.manual_seed(0)
    model = TextPromptIR(SMALL)
    compile_blocks(model)
    step = TrainStep(model, make_optimizer(model, 1e-3, 0.01, CPU), CPU, "fp32")
    lq, gt, text = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32), torch.randn(2, 16)
    frames = counters["frames"]["total"]
    step(lq, gt, text)  # training compiles the blocks, in grad mode
    assert counters["frames"]["total"] > frames  # the counter sees every compile
    frames = counters["frames"]["total"]
    seen = []
    model.register_forward_hook(lambda module, inputs, out: seen.append((torch.is_grad_enabled(), out.requires_grad)))
    assert finite_output(model, lq, text, CPU, "fp32")
    assert seen == [(False, False)]  # no autograd graph, so no activation set kept
    assert counters["frames"]["total"] == frames  # nothing recompiled for the no-grad forward


def test_the_compile_cache_defaults_beside_the_checkpoints_unless_the_environment_names_one(monkeypatch, tmp_path):
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    assert default_compile_cache("ckpt") == Path("ckpt/compile_cache")
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path))
    assert default_compile_cache("ckpt") == tmp_path


COMPILE_ONCE = """
import sys, torch
from utils.runtime.compile import compile_stats, use_compile_cache
use_compile_cache(sys.argv[1], "--compile_cache")
f = torch.compile(lambda x: x.reshape(4, 4).t() @ x.reshape(4, 4))  # no kernel to build: quick on a CPU
f(torch.randn(16))
print(compile_stats())
"""


def test_a_second_process_loads_what_the_first_compiled_from_the_cache(tmp_path):
    cache = tmp_path / "cache"
    runs = [subprocess.run([sys.executable, "-c", COMPILE_ONCE, str(cache)], cwd=ROOT, capture_output=True,
                           text=True, timeout=300) for _ in range(2)]
    assert all(r.returncode == 0 for r in runs), runs[-1].stderr[-2000:]
    first, second = (eval(r.stdout.strip().splitlines()[-1]) for r in runs)
    assert first["graphs"] >= 1 and first["from_cache"] == 0
    assert second["from_cache"] == second["graphs"] == first["graphs"]
    assert (cache / "fxgraph").is_dir() and any(cache.rglob("*.py"))  # the compiled code lies there


def test_an_unwritable_compile_cache_is_refused_before_training(tiny_layout, text_ckpt, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    args = base_args(tiny_layout, text_ckpt, tmp_path, "cache") + ["--compile", "--compile_cache", str(blocker / "x")]
    assert train.main(args) == 2
    err = capsys.readouterr().err
    assert f"{blocker / 'x'}: cannot keep the compile cache there" in err and "pass another --compile_cache" in err
    assert not (tmp_path / "ckpt/cache").exists()


def test_the_first_step_is_logged_at_once_whatever_the_log_interval(tiny_layout, text_ckpt, tmp_path, capsys):
    args = base_args(tiny_layout, text_ckpt, tmp_path, "first") + ["--max_steps", "2", "--log_every", "1000"]
    assert train.main(args) == 0
    out = capsys.readouterr().out
    assert out.count("first step: ") == 1
    assert ("speed: 1 process, eager blocks (on a CPU only with --compile), step not graphed (needs a CUDA GPU), "
            "fp32 (auto: fp32 on a CPU); global batch 2 (--batch_size 2 per process x 1)") in out
    assert "compile_cache" not in out  # nothing compiles, so no cache is made


def test_compiled_scores_equal_eager_ones_and_the_cache_is_kept_where_asked(tiny_layout, text_ckpt, tmp_path,
                                                                            monkeypatch):
    """test.py --compile pads no further than the eager route (a multiple of 8): same scores."""
    import json

    from torch._inductor.runtime.cache_dir_utils import default_cache_dir

    from tests.test_evaluate import test_script
    from utils.checkpoint import save_checkpoint

    # put the process's cache folder back afterwards (recorded even where it was unset)
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", os.environ.get("TORCHINDUCTOR_CACHE_DIR") or default_cache_dir())
    torch.manual_seed(0)
    net = TextPromptIR(dataclasses.replace(SMALL, text_dim=384))  # two block shapes: a quick compile
    ckpt = tmp_path / "small.pt"
    save_checkpoint(ckpt, {"model": net.state_dict(), "config": net.config.to_dict(),
                           "text_encoder": {"dir": str(text_ckpt), "id": "test"}})
    scores = {}
    for route in ("eager", "compiled"):
        extra = ["--compile", "--compile_cache", str(tmp_path / "cache")] if route == "compiled" else []
        assert test_script.main(["--ckpt", str(ckpt), "--test_root", str(tiny_layout / "test"), "--mode", "denoise",
                                 "--output_dir", str(tmp_path), "--name", route, "--device", "cpu", "--no_progress",
                                 "--num_workers", "0", *extra]) == 0
        scores[route] = [s["psnr"] for s in json.loads((tmp_path / route / "results.json").read_text())["sets"]]
    assert len(scores["eager"]) == 3  # CBSD68 at three sigmas, 32x48 after the crop to a multiple of 16
    assert max(abs(a - b) for a, b in zip(scores["eager"], scores["compiled"])) < 0.01
    assert (tmp_path / "cache/fxgraph").is_dir()
