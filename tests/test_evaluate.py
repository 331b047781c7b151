"""test.py: results match a direct computation, missing sets, bad checkpoints."""
from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from net.model import ModelConfig, TextPromptIR
from tests.conftest import ROOT, TINY_CONFIG
from utils.checkpoint import save_checkpoint

TINY = ModelConfig(**TINY_CONFIG)

# test.py by path: a plain `import test` could find Python's own `test` package
_spec = importlib.util.spec_from_file_location("test_script", ROOT / "test.py")
test_script = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(test_script)


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
    from utils.text.bank import DEFAULT_INSTRUCTIONS

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


def test_no_test_set_names_the_command_for_the_checkpoints_demo_set(tiny_ckpt, tmp_path):
    """`python test.py --ckpt ckpt/demo/last.pt` with an empty test/ names the command that scores the demo set."""
    ckpt = torch.load(tiny_ckpt, weights_only=True)
    demo = tmp_path / "demo.pt"
    save_checkpoint(demo, {**ckpt, "options": {"preset": "demo"}})
    empty = tmp_path / "empty"
    empty.mkdir()
    r = run_test("--ckpt", str(demo), "--test_root", str(empty), "--output_dir", str(tmp_path), "--device", "cpu")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert f"python test.py --preset demo --ckpt {demo}" in r.stderr and "data/demo/test" in r.stderr
    r = run_test("--ckpt", str(tiny_ckpt), "--test_root", str(empty), "--output_dir", str(tmp_path), "--device", "cpu")
    assert r.returncode == 2 and "no test set found" in r.stderr and "--preset" not in r.stderr


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


def copy_layout(tiny_layout: Path, tmp_path: Path) -> Path:
    import shutil

    root = tmp_path / "test"
    shutil.copytree(tiny_layout / "test", root)
    return root


def error_lines(r: subprocess.CompletedProcess) -> list[str]:
    """stderr without the untrained test encoder's low-confidence warnings; no traceback allowed."""
    assert "Traceback" not in r.stderr
    return [line for line in r.stderr.strip().splitlines() if not line.startswith("warning:")]


def truncated(path: Path) -> None:
    """Keep the header (so the size reads fine) but not the pixels."""
    path.write_bytes(path.read_bytes()[:60])


def test_results_are_written_after_every_set_and_kept_when_a_later_set_fails(tiny_layout, tiny_ckpt, tmp_path):
    root = copy_layout(tiny_layout, tmp_path)
    bad = root / "dehaze/input/0002_0.8_0.2.png"  # SOTS is scored last
    cv2.imwrite(str(bad), np.zeros((32, 32, 3), np.uint8))
    (root / "dehaze/input/0002_0.8_0.2.jpg").unlink()
    truncated(bad)
    r = run_test("--ckpt", str(tiny_ckpt), "--test_root", str(root), "--output_dir", str(tmp_path / "out"),
                 "--device", "cpu", "--no_progress", "--num_workers", "2")
    assert r.returncode == 2
    lines = error_lines(r)
    assert len(lines) == 1 and str(bad) in lines[0] and "worker" not in lines[0]
    assert "the 4 sets scored before are in" in lines[0]
    res = json.loads((tmp_path / "out/textpromptir/results.json").read_text())
    assert [s["label"] for s in res["sets"]] == ["CBSD68 σ=15", "CBSD68 σ=25", "CBSD68 σ=50", "Rain100L"]


def test_an_unwritable_output_folder_is_found_before_evaluating(tiny_layout, tiny_ckpt, tmp_path):
    (tmp_path / "file").write_text("not a folder")
    r = run_test("--ckpt", str(tiny_ckpt), "--test_root", str(tiny_layout / "test"), "--device", "cpu",
                 "--output_dir", str(tmp_path / "file" / "out"))
    assert r.returncode == 2 and len(error_lines(r)) == 1
    assert "cannot write the results there" in r.stderr and "PSNR" not in r.stdout


def test_nan_output_is_one_line(tiny_layout, text_ckpt, tmp_path):
    m = TextPromptIR(TINY)
    with torch.no_grad():
        m.output.weight.fill_(3e38)  # finite weights, inf/NaN images
    path = tmp_path / "bad.pt"
    save_checkpoint(path, dict(model=m.state_dict(), config=m.config.to_dict(), text_encoder={"dir": str(text_ckpt)}))
    r = run_test("--ckpt", str(path), "--test_root", str(tiny_layout / "test"), "--mode", "derain",
                 "--output_dir", str(tmp_path / "out"), "--device", "cpu", "--no_progress")
    assert r.returncode == 2 and len(error_lines(r)) == 1 and "NaN/inf" in r.stderr


def test_a_corrupt_denoising_image_read_by_a_worker_is_one_line(tiny_layout, tiny_ckpt, tmp_path):
    root = copy_layout(tiny_layout, tmp_path)
    bad = root / "denoise/CBSD68/1.png"
    truncated(bad)
    r = run_test("--ckpt", str(tiny_ckpt), "--test_root", str(root), "--mode", "denoise", "--device", "cpu",
                 "--output_dir", str(tmp_path / "out"), "--no_progress", "--num_workers", "2")
    assert r.returncode == 2
    assert error_lines(r) == [f"error: {bad}: cannot read this image (corrupt or not an image); remove or replace it"]


def test_a_pair_with_height_and_width_swapped_is_one_line(tiny_layout, tiny_ckpt, tmp_path):
    root = copy_layout(tiny_layout, tmp_path)
    target = root / "derain/Rain100L/target/0.png"
    cv2.imwrite(str(target), np.zeros((48, 64, 3), np.uint8))
    cv2.imwrite(str(root / "derain/Rain100L/input/0.png"), np.zeros((64, 48, 3), np.uint8))
    r = run_test("--ckpt", str(tiny_ckpt), "--test_root", str(root), "--mode", "derain", "--device", "cpu",
                 "--output_dir", str(tmp_path / "out"), "--num_workers", "2")
    assert r.returncode == 2 and len(error_lines(r)) == 1
    assert "64x48" in r.stderr and "48x64" in r.stderr and "must have the same size" in r.stderr


def test_ctrl_c_is_one_line(tiny_layout, tiny_ckpt, capsys, monkeypatch):
    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(test_script, "evaluate_benchmarks", interrupted)
    assert test_script.main(["--ckpt", str(tiny_ckpt), "--test_root", str(tiny_layout / "test")]) == 130
    assert capsys.readouterr().err.strip().splitlines() == ["interrupted"]


def test_a_target_without_input_is_reported(tiny_layout, tmp_path):
    from utils.eval.benchmarks import find_test_sets

    root = copy_layout(tiny_layout, tmp_path)
    (root / "derain/Rain100L/input/1.png").unlink()
    sets, notes = find_test_sets(root, "derain")
    assert len(sets[0]) == 1
    assert notes == [f"warning: 1 target(s) in {root / 'derain/Rain100L/target'} have no input and are not scored: 1.png"]


def test_sets_are_named_by_their_data_not_by_the_preset(tiny_layout, tiny_ckpt, tmp_path):
    r = run_test("--preset", "demo", "--ckpt", str(tiny_ckpt), "--test_root", str(tiny_layout / "test"),
                 "--mode", "dehaze", "--output_dir", str(tmp_path), "--device", "cpu", "--no_progress")
    assert r.returncode == 0, r.stderr
    md = (tmp_path / "demo/results.md").read_text()
    assert "| SOTS | dehaze |" in md and "| ours | — | " not in md  # the paper table has our SOTS number


def test_saved_images_keep_the_whole_name_of_their_input(tiny_layout, tiny_ckpt, tmp_path):
    r = run_test("--ckpt", str(tiny_ckpt), "--test_root", str(tiny_layout / "test"), "--mode", "dehaze",
                 "--output_dir", str(tmp_path), "--name", "saved", "--save_images", "--device", "cpu",
                 "--no_progress")
    assert r.returncode == 0, r.stderr
    names = sorted(p.name for p in (tmp_path / "saved/images/SOTS").iterdir())
    assert names == ["0001_0.8_0.2.png", "0002_0.8_0.2.png"]  # not 0001_0.8_0.png: "0.2" is no suffix


@pytest.mark.parametrize("size,flags,minimum", [(8, [], "16x16"), (5, ["--no_crop16"], "7x7")])
def test_an_image_too_small_for_the_protocol_is_one_line(tiny_ckpt, tmp_path, capsys, size, flags, minimum):
    from tests.conftest import smooth_image, write

    small = tmp_path / "test/denoise/CBSD68/small.png"
    write(small, smooth_image(np.random.default_rng(0), size, size))
    write(tmp_path / "test/denoise/CBSD68/fine.png", smooth_image(np.random.default_rng(1), 32, 32))
    rc = test_script.main(["--ckpt", str(tiny_ckpt), "--test_root", str(tmp_path / "test"), "--mode", "denoise",
                           "--output_dir", str(tmp_path / "out"), "--device", "cpu", "--no_progress",
                           "--num_workers", "0", *flags])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1, err
    assert str(small) in err[0] and f"{size}x{size}" in err[0] and minimum in err[0]


def test_a_test_image_whose_name_is_not_utf8_is_scored_and_named_by_its_bytes(tiny_ckpt, tmp_path, capsys):
    import os

    from tests.conftest import smooth_image

    folder = os.fsencode(tmp_path / "test/denoise/CBSD68")
    os.makedirs(folder)
    ok, png = cv2.imencode(".png", smooth_image(np.random.default_rng(0), 32, 32))
    with open(folder + b"/photo\xff\xfe.png", "wb") as f:  # a Latin-1 era name on a UTF-8 system
        f.write(png.tobytes())
    rc = test_script.main(["--ckpt", str(tiny_ckpt), "--test_root", str(tmp_path / "test"), "--mode", "denoise",
                           "--output_dir", str(tmp_path / "out"), "--name", "r", "--device", "cpu", "--no_progress",
                           "--num_workers", "0", "--save_images"])
    assert rc == 0, capsys.readouterr().err
    rows = (tmp_path / "out/r/results.csv").read_bytes().splitlines()
    assert len(rows) == 1 + 3 and all(b"photo\xff\xfe" in row for row in rows[1:])
    saved = [os.fsencode(p.name) for p in (tmp_path / "out/r/images").rglob("*.png")]
    assert len(saved) == 3 and all(b"photo\xff\xfe" in name for name in saved)


def test_a_set_of_a_task_the_checkpoint_never_learned_is_skipped_in_one_line(tiny_layout, tiny_ckpt, tmp_path, capsys):
    """A GoPro folder beside a three-task checkpoint (trained for denoise, derain, dehaze): no score of it,
    in the results or the five-task table beside the published numbers; asked for alone, one line."""
    root = tmp_path / "test"
    shutil.copytree(tiny_layout / "test/derain", root / "derain")
    for name in ("input", "target"):
        shutil.copytree(tiny_layout / "test/derain/Rain100L" / name, root / "deblur/GoPro" / name)
    common = ["--ckpt", str(tiny_ckpt), "--test_root", str(root), "--output_dir", str(tmp_path / "out"),
              "--device", "cpu", "--no_progress"]
    assert test_script.main([*common, "--mode", "all"]) == 0
    out = capsys.readouterr().out
    skipped = [line for line in out.splitlines() if "GoPro" in line]
    assert skipped == [f"skipped GoPro: {tiny_ckpt} was trained for denoise, derain, dehaze only, not deblur, "
                       "so it is not scored"]
    assert "published" not in out
    res = json.loads((tmp_path / "out/textpromptir/results.json").read_text())
    assert [s["label"] for s in res["sets"]] == ["Rain100L"]
    assert "GoPro" not in (tmp_path / "out/textpromptir/results.md").read_text()
    assert test_script.main([*common, "--mode", "deblur", "--name", "alone"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "none of the sets found is of a task it was trained for" in err[0]
    assert not (tmp_path / "out/alone/results.json").exists()
