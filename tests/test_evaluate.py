"""test.py: results match a direct computation, missing sets, bad checkpoints."""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from tests.conftest import ROOT

from net.model import ModelConfig, TextPromptIR
from utils.checkpoint import save_checkpoint

TINY = ModelConfig(text_dim=384, dim=8, num_blocks=(1, 1, 1, 1), num_refinement_blocks=1, heads=(1, 1, 1, 1))

# test.py by path: a plain `import test` could find Python's own `test` package
_spec = importlib.util.spec_from_file_location("test_script", ROOT / "test.py")
test_script = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(test_script)


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory, text_ckpt) -> Path:
    torch.manual_seed(0)
    m = TextPromptIR(TINY)
    path = tmp_path_factory.mktemp("ckpt") / "last.pt"
    save_checkpoint(path, dict(model=m.state_dict(), config=m.config.to_dict(),
                               text_encoder={"dir": str(text_ckpt), "id": "test"}))
    return path


def run_test(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "test.py", *args], cwd=ROOT, capture_output=True, text=True)


def read_rgb(path: Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB).astype(np.float64) / 255.0


def test_results_json_matches_direct_computation(tiny_layout, tiny_ckpt, text_ckpt, tmp_path):
    assert test_script.main(["--ckpt", str(tiny_ckpt), "--test_root", str(tiny_layout / "test"),
                             "--output_dir", str(tmp_path), "--name", "r", "--device", "cpu",
                             "--no_progress", "--num_workers", "0"]) == 0
    res = json.loads((tmp_path / "r/results.json").read_text())
    labels = {s["label"]: s for s in res["sets"]}
    assert len(res["sets"]) == 5  # CBSD68 at three sigmas, Rain100L, SOTS
    derain = next(s for s in res["sets"] if s["task"] == "derain")

    # direct: read the pairs, crop to a multiple of 16 at the centre, restore, score
    from net.text_encoder import InstructionEncoder
    from utils.instructions import DEFAULT_INSTRUCTIONS

    model = TextPromptIR(ModelConfig.from_dict(torch.load(tiny_ckpt, weights_only=True)["config"])).eval()
    model.load_state_dict(torch.load(tiny_ckpt, weights_only=True)["model"])
    text = InstructionEncoder.load(str(text_ckpt)).embed([DEFAULT_INSTRUCTIONS["derain"]])
    psnrs, ssims, in_psnrs = [], [], []
    for i in range(2):
        lq = read_rgb(tiny_layout / f"test/derain/Rain100L/input/{i}.png")
        gt = read_rgb(tiny_layout / f"test/derain/Rain100L/target/{i}.png")
        h, w = lq.shape[0] // 16 * 16, lq.shape[1] // 16 * 16
        top, left = (lq.shape[0] - h) // 2, (lq.shape[1] - w) // 2
        lq, gt = lq[top:top + h, left:left + w], gt[top:top + h, left:left + w]
        with torch.no_grad():
            out = model(torch.from_numpy(lq).permute(2, 0, 1)[None].float(), text)
        out = out[0].clamp(0, 1).permute(1, 2, 0).double().numpy()
        psnrs.append(peak_signal_noise_ratio(gt, out, data_range=1.0))
        ssims.append(structural_similarity(gt, out, data_range=1.0, channel_axis=-1))
        in_psnrs.append(peak_signal_noise_ratio(gt, lq, data_range=1.0))
    assert derain["n"] == 2
    assert derain["psnr"] == pytest.approx(np.mean(psnrs), abs=1e-3)
    assert derain["ssim"] == pytest.approx(np.mean(ssims), abs=1e-4)
    assert derain["input_psnr"] == pytest.approx(np.mean(in_psnrs), abs=1e-6)
    assert derain["paper_psnr"] == 38.41
    csv_lines = (tmp_path / "r/results.csv").read_text().strip().splitlines()
    assert len(csv_lines) == 1 + 2 * 5  # header + 2 images in each of the 5 sets
    md = (tmp_path / "r/results.md").read_text()
    assert "TextPromptIR (paper)" in md and "32.80" in md
    assert any("σ=50" in label for label in labels)


def test_missing_sets_are_skipped_and_no_set_is_an_error(tiny_layout, tiny_ckpt, tmp_path):
    r = run_test("--ckpt", str(tiny_ckpt), "--test_root", str(tiny_layout / "test"), "--mode", "derain",
                 "--output_dir", str(tmp_path), "--device", "cpu", "--no_progress")
    assert r.returncode == 0, r.stderr
    assert "Rain100L" in r.stdout
    empty = tmp_path / "empty"
    empty.mkdir()
    r = run_test("--ckpt", str(tiny_ckpt), "--test_root", str(empty), "--output_dir", str(tmp_path), "--device", "cpu")
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert "no test set found" in r.stderr and "derain/<set>/{input,target}" in r.stderr


def test_foreign_or_missing_checkpoint_is_a_clear_error(tiny_layout, tmp_path):
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {"w": torch.zeros(1)}}, foreign)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint at all")
    for path, expected in [(foreign, "not a checkpoint written by train.py"), (garbage, "not a checkpoint written by train.py"),
                           (tmp_path / "missing.pt", "checkpoint not found")]:
        r = run_test("--ckpt", str(path), "--test_root", str(tiny_layout / "test"), "--device", "cpu")
        assert r.returncode == 2, path
        assert "Traceback" not in r.stderr
        assert expected in r.stderr and str(path) in r.stderr
        assert len(r.stderr.strip().splitlines()) == 1


def test_checkpoint_of_another_config_is_a_clear_error(tiny_layout, tmp_path):
    m = TextPromptIR(TINY)
    settings = dict(m.config.to_dict(), dim=16)  # weights of one config, settings of another
    path = tmp_path / "mismatch.pt"
    save_checkpoint(path, dict(model=m.state_dict(), config=settings))
    r = run_test("--ckpt", str(path), "--test_root", str(tiny_layout / "test"), "--device", "cpu")
    assert r.returncode == 2
    assert "weights do not fit" in r.stderr and "Traceback" not in r.stderr
