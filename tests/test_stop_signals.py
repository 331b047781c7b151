"""Signals: SIGTERM stops train.py and test.py as Ctrl-C does (the step ends, last.pt is saved,
exit 143; SIGINT 130), SIGUSR1 saves last.pt and training goes on; under torchrun every process
stops at the same step. Each test runs the script in its own process and signals it."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import train
from tests.conftest import ROOT, smooth_image, tiny_bank, write, write_dehaze_pair, write_derain_pair
from tests.test_train import base_args, free_port, weights
from utils.stop_signals import StopRequested, StopSignals

ENV = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")


class Script:
    """A script in its own process group, its output read line by line."""

    def __init__(self, command: list[str]) -> None:
        self.proc = subprocess.Popen(command, cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, start_new_session=True)
        self.lines: list[str] = []

    def wait_for(self, text: str) -> str:
        for line in self.proc.stdout:
            self.lines.append(line)
            if text in line:
                return line
        self.proc.wait()
        raise AssertionError(f"ended (exit {self.proc.returncode}) before {text!r}:\n" + "".join(self.lines))

    def signal_group(self, signum: int) -> None:
        """As SLURM does: every process of the job, the data workers too."""
        os.killpg(self.proc.pid, signum)

    def finish(self, timeout: float = 120) -> tuple[int, str]:
        out, _ = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, "".join(self.lines) + out

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


@pytest.fixture
def scripts():
    started: list[Script] = []

    def start(command: list[str]) -> Script:
        started.append(Script(command))
        return started[-1]

    yield start
    for script in started:
        script.kill()


def endless(args: list[str]) -> list[str]:
    args = list(args)
    args[args.index("--epochs") + 1] = "100000"
    return args


def test_sigterm_ends_the_step_saves_and_exits_143_and_the_resume_is_exact(tiny_layout, text_ckpt, tmp_path,
                                                                          scripts):
    args = endless(base_args(tiny_layout, text_ckpt, tmp_path, "term"))
    run = scripts([sys.executable, "train.py", *args])
    run.wait_for("first step")
    run.proc.send_signal(signal.SIGTERM)
    code, out = run.finish()
    assert code == 143, out
    assert "stopped by SIGTERM: saved" in out and "Traceback" not in out
    stopped = torch.load(tmp_path / "ckpt/term/last.pt", weights_only=True)
    n = stopped["step"]
    assert n >= 1 and stopped["batches_done_in_epoch"] == n % 9  # 9 steps per epoch
    # resuming continues exactly: the same weights as a run that was never stopped
    assert train.main(args + ["--resume", "--max_steps", str(n + 2)]) == 0
    straight = endless(base_args(tiny_layout, text_ckpt, tmp_path, "straight"))
    assert train.main(straight + ["--max_steps", str(n + 2)]) == 0
    a, b = weights(tmp_path / "ckpt/term/last.pt"), weights(tmp_path / "ckpt/straight/last.pt")
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-6, rtol=0, msg=k)


def test_sigusr1_saves_and_training_goes_on_then_ctrl_c_saves_and_exits_130(tiny_layout, text_ckpt, tmp_path,
                                                                           scripts):
    run = scripts([sys.executable, "train.py", *endless(base_args(tiny_layout, text_ckpt, tmp_path, "usr1")),
                   "--num_workers", "1"])
    run.wait_for("first step")
    run.signal_group(signal.SIGUSR1)  # the data worker gets it too, and leaves it to the main process
    run.wait_for("SIGUSR1: saved")
    saved = torch.load(tmp_path / "ckpt/usr1/last.pt", weights_only=True)
    assert saved["step"] >= 1
    time.sleep(1.0)  # training goes on
    assert run.proc.poll() is None
    run.signal_group(signal.SIGINT)  # as Ctrl-C in a terminal
    code, out = run.finish()
    assert code == 130, out
    assert "stopped by SIGINT: saved" in out and "Traceback" not in out
    assert torch.load(tmp_path / "ckpt/usr1/last.pt", weights_only=True)["step"] > saved["step"]


def goes_on_after_sigusr1_and_stops_on_sigterm(run, started: str, noted: str) -> str:
    """Once ``started`` is printed: SIGUSR1 is noted (``noted``) and the stage goes on; SIGTERM then
    stops it with 143 and "stopped by SIGTERM" as its last line. Returns the output."""
    run.wait_for(started)
    run.proc.send_signal(signal.SIGUSR1)
    run.wait_for(noted)
    assert run.proc.poll() is None
    run.proc.send_signal(signal.SIGTERM)
    code, out = run.finish()
    assert code == 143, out
    assert out.strip().splitlines()[-1] == "stopped by SIGTERM"
    return out


def test_the_text_stage_goes_on_after_sigusr1_and_stops_on_sigterm(tmp_path, scripts):
    out_dir = tmp_path / "encoder"
    run = scripts([sys.executable, "train.py", "--stage", "text", "--text_ckpt", str(out_dir),
                   "--bank_root", str(tiny_bank(tmp_path / "bank")), "--text_epochs", "100000",
                   "--text_batch_size", "3"])
    out = goes_on_after_sigusr1_and_stops_on_sigterm(run, "text stage: fine-tuning", "SIGUSR1: train.py saves last.pt")
    assert "Traceback" not in out
    assert not (out_dir / "labels.json").exists()


def test_the_classifier_stage_stops_on_sigterm_and_keeps_the_checkpoint(tiny_ckpt, text_ckpt, tmp_path, scripts):
    from tests.test_degradation_classifier import stage_args

    root = tmp_path / "Train"  # images large enough for the classifier's 64-pixel crops
    rng = np.random.default_rng(0)
    for i in range(2):
        write(root / "Denoise" / f"{i}.png", smooth_image(rng, 72, 72))
        write_derain_pair(root, i, smooth_image(rng, 72, 72))
        write_dehaze_pair(root, i, smooth_image(rng, 72, 72))
    last = tmp_path / "old.pt"
    shutil.copy(tiny_ckpt, last)
    before = last.read_bytes()
    run = scripts([sys.executable, "train.py", "--stage", "classifier", "--resume", str(last),
                   "--classifier_steps", "1000000", *stage_args(root, text_ckpt, tmp_path)])
    goes_on_after_sigusr1_and_stops_on_sigterm(run, "degradation classifier (", "SIGUSR1:")
    assert last.read_bytes() == before


SLOW_SECOND_SET = """
import sys, time
import utils.eval.evaluate as evaluate
real, calls = evaluate.evaluate_set, []
def second_set_waits(*args, **kwargs):
    calls.append(1)
    if len(calls) == 2:
        print("scoring the second set", flush=True)
        time.sleep(60)
    return real(*args, **kwargs)
evaluate.evaluate_set = second_set_waits
import test
sys.exit(test.main(sys.argv[1:]))
"""


def test_sigterm_to_test_py_keeps_the_sets_already_scored(tiny_layout, text_ckpt, tmp_path, scripts):
    assert train.main(base_args(tiny_layout, text_ckpt, tmp_path, "scored") + ["--max_steps", "1"]) == 0
    run = scripts([sys.executable, "-c", SLOW_SECOND_SET, "--ckpt", str(tmp_path / "ckpt/scored/last.pt"),
                   "--test_root", str(tiny_layout / "test"), "--output_dir", str(tmp_path / "out"), "--name", "t",
                   "--device", "cpu", "--no_progress"])
    run.wait_for("scoring the second set")
    run.proc.send_signal(signal.SIGUSR1)
    run.wait_for("SIGUSR1: test.py adds each set")
    run.proc.send_signal(signal.SIGTERM)
    code, out = run.finish()
    assert code == 143, out
    assert "the 1 sets scored before are in" in out and out.strip().splitlines()[-1] == "stopped by SIGTERM"
    assert "Traceback" not in out
    results = json.loads((tmp_path / "out/t/results.json").read_text())
    assert len(results["sets"]) == 1


def test_sigterm_to_one_torchrun_process_stops_every_process_at_the_same_step(tiny_layout, text_ckpt, tmp_path,
                                                                             scripts):
    torchrun = Path(sys.executable).with_name("torchrun")
    args = endless(base_args(tiny_layout, text_ckpt, tmp_path, "ddp"))
    run = scripts([str(torchrun), "--nproc_per_node=2", f"--master_port={free_port()}", "train.py", *args])
    run.wait_for("first step")
    workers = [int(p) for p in Path(f"/proc/{run.proc.pid}/task/{run.proc.pid}/children").read_text().split()]
    rank1 = [p for p in workers if b"RANK=1\0" in Path(f"/proc/{p}/environ").read_bytes()
             and b"LOCAL_RANK=1\0" in Path(f"/proc/{p}/environ").read_bytes()]
    assert len(rank1) == 1
    os.kill(rank1[0], signal.SIGTERM)  # rank 1 only; rank 0 learns it at the next step and saves
    code, out = run.finish()
    assert code != 0  # torchrun's own status for a process that ended with 143
    assert "stopped by SIGTERM: saved" in out, out[-3000:]
    ck = torch.load(tmp_path / "ckpt/ddp/last.pt", weights_only=True)
    assert ck["step"] >= 1 and "Traceback" not in out.split("stopped by SIGTERM")[0]


def test_outside_a_loop_a_stop_signal_raises_once_and_inside_it_is_recorded():
    with StopSignals("note") as signals:
        with pytest.raises(StopRequested) as raised:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)
        assert raised.value.exit_code == 143
        os.kill(os.getpid(), signal.SIGTERM)  # a repeated signal while stopping: nothing more is raised
    with StopSignals("note") as signals, signals.between_steps():
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGUSR1)
        time.sleep(0.1)
        assert signals.stop == signal.SIGINT and signals.take_save_request() and not signals.take_save_request()
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
