"""scripts/equal_minutes.py says what goes wrong: every numeric option is checked (one line, exit 2,
nothing written), and a training section that fails is one line on the screen and exit status 1,
not "0 points" and 0."""
from __future__ import annotations

import json
import sys

import pytest

from tests.conftest import ROOT

sys.path.insert(0, str(ROOT / "scripts"))
import equal_minutes  # noqa: E402

BAD = [
    ["--minutes", "0"], ["--minutes", "nan"], ["--minutes", "-1"], ["--minutes", "inf"],
    ["--gpu_budget", "nan"], ["--gpu_budget", "0"], ["--score_s", "-1"], ["--score_s", "nan"],
    ["--startup_s", "inf"], ["--startup_s", "-5"], ["--patch_size", "0"], ["--patch_size", "100000"],
    ["--patch_size", "1.5"], ["--num_workers", "-1"], ["--log_every", "0"], ["--seed", "-1"],
    ["--spread_seeds", "1", "x"], ["--spread_steps", "0"], ["--sections", "nothing"],
]


@pytest.mark.parametrize("bad", BAD, ids=" ".join)
def test_each_bad_option_is_one_line_and_nothing_is_written(bad, tmp_path, capsys):
    rc = equal_minutes.main(["--device", "cpu", "--out", str(tmp_path / "out"), *bad])
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert rc == 2, captured
    assert len(lines) == 1 and lines[0].startswith("error: ") and bad[0] in lines[0], captured.err
    assert "Traceback" not in captured.err + captured.out
    assert not (tmp_path / "out").exists()  # no runs.json with a nan in it


def test_a_failed_training_section_is_one_line_and_exit_1(tiny_layout, text_ckpt, tmp_path, monkeypatch, capsys):
    def failing_training(cmd, log, limit_s):  # train.py as it fails on a missing --data_root
        log.write_text("$ " + " ".join(cmd) + f"\nerror: {tmp_path / 'no_such_data'}: no such folder; pass "
                       "--data_root with the training sets\n")
        return 2, [], 4.0

    monkeypatch.setattr(equal_minutes, "run_logged", failing_training)
    monkeypatch.chdir(ROOT)  # the script works from the project's folder; back afterwards
    out = tmp_path / "out"
    rc = equal_minutes.main(["--device", "cpu", "--net", "demo", "--minutes", "0.01", "--sections", "ours",
                             "--data_root", str(tmp_path / "no_such_data"), "--text_ckpt", str(text_ckpt),
                             "--test_root", str(tiny_layout / "test"), "--out", str(out)])
    captured = capsys.readouterr()
    assert rc == 1, captured
    [line] = [line for line in captured.err.splitlines() if line.startswith("ours: FAILED")]
    assert "training failed (exit 2): error: " in line and "no_such_data" in line
    assert line.endswith(f"(whole output: {out / 'ours_train.log'})")
    assert "Traceback" not in captured.err
    assert json.loads((out / "runs.json").read_text())["ours"]["failed"] == line.split("FAILED: ", 1)[1]


def test_a_run_killed_at_its_time_limit_is_a_failure(tmp_path):
    import argparse

    rec = equal_minutes.Record(tmp_path, argparse.Namespace(out=tmp_path))
    log = tmp_path / "ours_train.log"
    log.write_text("$ python train.py\nfirst step: 3.0 s\nstep 20 loss 0.1\n")
    assert not equal_minutes.check_training(rec, "ours", 124, log)
    assert rec.failures == [f"ours: training failed (killed at its time limit): step 20 loss 0.1 (whole output: {log})"]
    assert equal_minutes.check_training(rec, "spread_seed0", 0, log) and len(rec.failures) == 1
