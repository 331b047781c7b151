"""train.py: exact resume, DDP on CPU, NaN stop, config mismatch, Ctrl-C-safe checkpoints."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.conftest import ROOT, TINY_NET

import train


def base_args(layout: Path, text_ckpt: Path, tmp: Path, run: str) -> list[str]:
    return ["--data_root", str(layout / "Train"), "--text_ckpt", str(text_ckpt), *TINY_NET,
            "--patch_size", "32", "--batch_size", "2", "--num_workers", "0", "--epochs", "3",
            "--warmup_epochs", "1", "--lr", "1e-3", "--ckpt_dir", str(tmp / "ckpt"),
            "--log_dir", str(tmp / "logs"), "--name", run, "--device", "cpu", "--no_progress",
            "--repeat", "denoise_15=1", "denoise_25=1", "denoise_50=1", "derain=1", "dehaze=1"]


def weights(path: Path) -> dict:
    return torch.load(path, weights_only=True)["model"]


def test_resume_is_exact(tiny_layout, text_ckpt, tmp_path):
    # 18 samples (4 clean images x 3 sigmas + 3 rain + 3 haze) / batch 2 = 9 steps per epoch
    assert train.main(base_args(tiny_layout, text_ckpt, tmp_path, "straight") + ["--max_steps", "4"]) == 0
    assert train.main(base_args(tiny_layout, text_ckpt, tmp_path, "split") + ["--max_steps", "2"]) == 0
    first = torch.load(tmp_path / "ckpt/split/last.pt", weights_only=True)
    assert first["step"] == 2 and first["batches_done_in_epoch"] == 2
    assert train.main(base_args(tiny_layout, text_ckpt, tmp_path, "split") + ["--max_steps", "4", "--resume"]) == 0
    a, b = weights(tmp_path / "ckpt/straight/last.pt"), weights(tmp_path / "ckpt/split/last.pt")
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-6, rtol=0, msg=k)
    # and training did change the weights
    assert any((a[k] - first["model"][k]).abs().max() > 0 for k in a)


def test_resume_across_epoch_boundary_and_checkpoint_contents(tiny_layout, text_ckpt, tmp_path):
    args = base_args(tiny_layout, text_ckpt, tmp_path, "epochs")
    assert train.main(args + ["--max_steps", "11"]) == 0  # one epoch (9 steps) and 2 more
    assert train.main(base_args(tiny_layout, text_ckpt, tmp_path, "epochs5") + ["--max_steps", "5"]) == 0
    assert train.main(base_args(tiny_layout, text_ckpt, tmp_path, "epochs5") + ["--max_steps", "11", "--resume"]) == 0
    a, b = weights(tmp_path / "ckpt/epochs/last.pt"), weights(tmp_path / "ckpt/epochs5/last.pt")
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-6, rtol=0, msg=k)
    ck = torch.load(tmp_path / "ckpt/epochs/last.pt", weights_only=True)
    for key in ("model", "model_args", "optimizer", "scheduler", "scaler", "epoch", "step", "rng",
                "options", "text_encoder"):
        assert key in ck
    assert ck["epoch"] == 1 and ck["step"] == 11 and ck["batches_done_in_epoch"] == 2
    assert ck["text_encoder"]["dir"] == str(text_ckpt)
    assert not any(k.startswith(("module.", "_orig_mod.")) for k in ck["model"])
    assert (tmp_path / "logs/epochs/options.yaml").is_file()


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tiny_layout, text_ckpt, tmp_path, capsys):
    args = base_args(tiny_layout, text_ckpt, tmp_path, "nan")
    assert train.main(args + ["--max_steps", "1"]) == 0
    good = (tmp_path / "ckpt/nan/last.pt").read_bytes()
    capsys.readouterr()
    # an absurd learning rate blows the weights up after the first step
    assert train.main(args + ["--lr", "1e30", "--warmup_epochs", "0"]) == 2
    err = capsys.readouterr().err
    assert "loss became" in err and "last good checkpoint" in err
    assert (tmp_path / "ckpt/nan/last.pt").read_bytes() == good


def test_resume_with_another_config_is_refused(tiny_layout, text_ckpt, tmp_path, capsys):
    args = base_args(tiny_layout, text_ckpt, tmp_path, "cfg")
    assert train.main(args + ["--max_steps", "1"]) == 0
    capsys.readouterr()
    assert train.main(args + ["--resume", "--dim", "16"]) == 2
    err = capsys.readouterr().err.strip()
    assert "another network config" in err and "dim" in err
    assert len(err.splitlines()) == 1


def test_missing_text_encoder_is_a_clear_error(tiny_layout, tmp_path):
    args = base_args(tiny_layout, tmp_path / "nowhere", tmp_path, "notext") + ["--max_steps", "1"]
    r = subprocess.run([sys.executable, "train.py", *args], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert "--stage text" in r.stderr and str(tmp_path / "nowhere") in r.stderr


def test_plain_restormer_trains_without_text(tiny_layout, tmp_path):
    args = base_args(tiny_layout, tmp_path / "unused", tmp_path, "plain") + ["--text_cond", "none", "--max_steps", "2"]
    assert train.main(args) == 0
    ck = torch.load(tmp_path / "ckpt/plain/last.pt", weights_only=True)
    assert ck["model_args"]["text_cond"] == "none"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_process_cpu_ddp(tiny_layout, text_ckpt, tmp_path):
    torchrun = Path(sys.executable).with_name("torchrun")
    args = base_args(tiny_layout, text_ckpt, tmp_path, "ddp") + ["--max_steps", "3"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run([str(torchrun), "--nproc_per_node=2", f"--master_port={free_port()}", "train.py", *args],
                       cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "on 2 x cpu" in r.stdout
    ck = torch.load(tmp_path / "ckpt/ddp/last.pt", weights_only=True)
    assert ck["step"] == 3
    assert ck["options"]["batch_size"] == 2
