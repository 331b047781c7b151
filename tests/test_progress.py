"""Progress output: a line every few percent in a log file, and one-line errors for every script."""
from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import ROOT
from utils.progress import LineProgress, progress


def test_a_log_file_gets_a_line_every_ten_percent_not_one_per_step(capsys):
    bar = progress(1000, "epoch 1/1")  # pytest's captured stderr is not a terminal
    assert isinstance(bar, LineProgress)
    bar.set_postfix(loss="0.1234")
    for _ in range(1000):
        bar.update(1)
    bar.close()
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 10 and "\r" not in "".join(lines)
    assert lines[0] == "epoch 1/1: 100/1000 (10%), loss=0.1234" and lines[-1].startswith("epoch 1/1: 1000/1000 (100%)")
    assert lines[1] == "epoch 1/1: 200/1000 (20%)"  # no new values since the last line: none repeated


def test_resumed_progress_counts_from_where_it_was(capsys):
    bar = progress(10, "epoch 2/3", initial=7)
    for _ in range(3):
        bar.update(1)
    assert capsys.readouterr().out.splitlines() == ["epoch 2/3: 8/10 (80%)", "epoch 2/3: 9/10 (90%)",
                                                    "epoch 2/3: 10/10 (100%)"]


@pytest.mark.parametrize("script,args,option", [
    ("train.py", ["--epochs", "0"], "--epochs"),
    ("test.py", ["--mode", "blur"], "--mode"),
    ("demo.py", ["--input", "x.png", "--task", "sharpen"], "--task"),
    ("bench.py", ["--device", "tpu"], "--device"),
])
def test_a_bad_option_is_one_line_for_every_script(script, args, option):
    r = subprocess.run([sys.executable, script, *args], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: argument " + option), r.stderr
