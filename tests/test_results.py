"""test.py's results files: runs add rows instead of replacing them, nothing scored is replaced
without --overwrite, saved images and CSV rows never collide, and each row says what its score
depends on (protocol, library versions)."""
from __future__ import annotations

import csv
import importlib.util
import json
import re
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from net.model import ModelConfig, TextPromptIR
from tests.conftest import ROOT, TINY_CONFIG, smooth_image, write
from utils.checkpoint import save_checkpoint

# test.py by path: a plain `import test` could find Python's own `test` package
_spec = importlib.util.spec_from_file_location("test_script", ROOT / "test.py")
test_script = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(test_script)


@pytest.fixture
def run_test(capsys):
    """test.py's main in this process (as a user would run it, without the start-up time)."""
    def run(*args: str | Path) -> SimpleNamespace:
        capsys.readouterr()
        code = test_script.main(["--device", "cpu", "--no_progress", "--num_workers", "0", *map(str, args)])
        out, err = capsys.readouterr()
        return SimpleNamespace(returncode=code, stdout=out, stderr=err)
    return run


def one_error_line(r: SimpleNamespace) -> str:
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert r.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    return lines[0]


def rows(out: Path) -> list[tuple]:
    sets = json.loads((out / "results.json").read_text())["sets"]
    return [(s["label"], s["route"], s["precision"], s["y_channel"], s["crop16"]) for s in sets]


def files(out: Path) -> dict[str, bytes]:
    return {name: (out / name).read_bytes() for name in ("results.json", "results.csv", "results.md")}


def test_a_later_run_adds_its_sets_and_replaces_none_without_overwrite(tiny_layout, tiny_ckpt, text_ckpt, tmp_path, run_test):
    common = ("--ckpt", tiny_ckpt, "--test_root", tiny_layout / "test", "--output_dir", tmp_path, "--name", "X")
    out = tmp_path / "X"
    assert run_test(*common).returncode == 0
    five = rows(out)
    assert len(five) == 5
    before = files(out)
    line = one_error_line(run_test(*common, "--mode", "derain"))  # the same set, the same protocol
    assert str(out / "results.json") in line and "Rain100L" in line and "--overwrite" in line
    assert files(out) == before
    r = run_test(*common, "--mode", "derain", "--y_channel")  # another protocol: one more row
    assert r.returncode == 0, r.stderr
    assert rows(out) == five + [("Rain100L", "instruction", "fp32", True, True)]
    r = run_test(*common, "--mode", "derain", "--overwrite")  # told to: that one row is replaced
    assert r.returncode == 0, r.stderr
    assert rows(out) == five + [("Rain100L", "instruction", "fp32", True, True)]
    with open(out / "results.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert len(table) == 2 * 6 and {"set", "route", "precision", "y_channel", "crop16", "path"} <= set(table[0])
    md = (out / "results.md").read_text()
    assert md.count("TextPromptIR (paper)") == 2 and "Y channel" in md  # one table per protocol

    # the results of another checkpoint are never mixed in
    other = TextPromptIR(ModelConfig(**TINY_CONFIG))
    path = tmp_path / "other.pt"
    save_checkpoint(path, {"model": other.state_dict(), "config": other.config.to_dict(),
                           "text_encoder": {"dir": str(text_ckpt)}})
    before = files(out)
    line = one_error_line(run_test(*common[:1], path, *common[2:], "--mode", "dehaze", "--y_channel"))
    assert "another checkpoint" in line and str(tiny_ckpt) in line and "--overwrite" in line
    assert files(out) == before
    r = run_test(*common[:1], path, *common[2:], "--mode", "dehaze", "--overwrite")
    assert r.returncode == 0, r.stderr
    assert rows(out) == [("SOTS", "instruction", "fp32", False, True)]


def test_results_record_the_versions_and_the_protocol_they_depend_on(tiny_layout, tiny_ckpt, tmp_path, run_test):
    import skimage

    r = run_test("--ckpt", tiny_ckpt, "--test_root", tiny_layout / "test", "--output_dir", tmp_path, "--name", "v",
                 "--mode", "derain", "--no_crop16")
    assert r.returncode == 0, r.stderr
    res = json.loads((tmp_path / "v/results.json").read_text())
    (row,) = res["sets"]
    assert row["versions"]["torch"] == torch.__version__ and row["versions"]["numpy"] == np.__version__
    assert row["versions"]["scikit_image"] == skimage.__version__ and row["versions"]["project"]
    assert (row["precision"], row["y_channel"], row["crop16"], row["instruction"]) == ("fp32", False, False, None)
    assert res["checkpoint"]["path"] == str(tiny_ckpt) and len(res["checkpoint"]["sha256"]) == 64


def test_scikit_image_is_pinned_to_the_version_the_scores_were_made_with():
    import skimage

    pins = re.findall(r"^scikit-image==(\S+)", (ROOT / "requirements.txt").read_text(), re.M)
    assert pins == [skimage.__version__]


def test_saved_images_and_csv_rows_never_collide(tiny_ckpt, tmp_path, run_test):
    rng = np.random.default_rng(0)
    root = tmp_path / "test"
    for name in ("a.png", "a.jpg", "sub1/b.png", "sub2/b.png", "c.jpg"):
        write(root / "denoise/Mine" / name, smooth_image(rng, 32, 32))
    common = ("--ckpt", tiny_ckpt, "--test_root", root, "--mode", "denoise", "--output_dir", tmp_path / "out",
              "--name", "n", "--save_images")
    r = run_test(*common)
    assert r.returncode == 0, r.stderr
    saved = tmp_path / "out/n/images/Mine_σ15"
    assert sorted(p.relative_to(saved).as_posix() for p in saved.rglob("*.png")) == [
        "a.jpg.png", "a.png.png", "c.png", "sub1/b.png", "sub2/b.png"]
    with open(tmp_path / "out/n/results.csv", newline="") as f:
        table = [row for row in csv.DictReader(f) if row["set"] == "Mine σ=15"]
    assert sorted(row["path"] for row in table) == ["a.jpg", "a.png", "c.jpg", "sub1/b.png", "sub2/b.png"]
    # images already written are not replaced by a run of another protocol either
    before = (saved / "c.png").read_bytes()
    line = one_error_line(run_test(*common, "--y_channel"))
    assert str(saved / "a.jpg.png") in line and "--overwrite" in line
    assert (saved / "c.png").read_bytes() == before


def test_saved_images_keep_the_subfolder_of_their_input(tiny_layout, tiny_ckpt, tmp_path, run_test):
    root = tmp_path / "test"
    shutil.copytree(tiny_layout / "test/derain", root / "derain")
    (root / "derain/Rain100L/input/deep").mkdir()
    (root / "derain/Rain100L/input/1.png").rename(root / "derain/Rain100L/input/deep/1.png")
    r = run_test("--ckpt", tiny_ckpt, "--test_root", root, "--mode", "derain", "--output_dir", tmp_path / "out",
                 "--save_images")
    assert r.returncode == 0, r.stderr
    saved = tmp_path / "out/textpromptir/images/Rain100L"
    assert sorted(p.relative_to(saved).as_posix() for p in saved.rglob("*.png")) == ["0.png", "deep/1.png"]


@pytest.mark.parametrize("bad", ["not json", json.dumps({"meta": {}, "sets": []})])
def test_a_results_file_this_version_cannot_merge_into_is_refused(tiny_layout, tiny_ckpt, tmp_path, run_test, bad):
    (tmp_path / "X").mkdir()
    (tmp_path / "X/results.json").write_text(bad)
    common = ("--ckpt", tiny_ckpt, "--test_root", tiny_layout / "test", "--output_dir", tmp_path, "--name", "X",
              "--mode", "derain")
    line = one_error_line(run_test(*common))
    assert str(tmp_path / "X/results.json") in line and "--overwrite" in line
    assert (tmp_path / "X/results.json").read_text() == bad
    assert run_test(*common, "--overwrite").returncode == 0


def test_two_tasks_sets_of_one_name_are_two_rows_and_two_image_folders(tiny_ckpt, tmp_path, run_test):
    """The demo set names its rain and haze sets alike ("demo"): each keeps its own row and images."""
    from utils.data.layouts import DEMO_MANIFEST

    rng = np.random.default_rng(0)
    root = tmp_path / "test"
    (root / DEMO_MANIFEST).parent.mkdir(parents=True)
    (root.parent / DEMO_MANIFEST).write_text("{}")
    for task in ("derain", "dehaze"):
        clean = smooth_image(rng, 32, 32)
        write(root / task / "target" / "0001.png", clean)
        write(root / task / "input" / ("0001.png" if task == "derain" else "0001_0.8_0.2.jpg"), 255 - clean)
    r = run_test("--ckpt", tiny_ckpt, "--test_root", root, "--output_dir", tmp_path, "--name", "D", "--save_images")
    assert r.returncode == 0, r.stderr
    sets = json.loads((tmp_path / "D" / "results.json").read_text())["sets"]
    assert sorted((s["task"], s["label"]) for s in sets) == [("dehaze", "demo"), ("derain", "demo")]
    assert sorted(p.name for p in (tmp_path / "D" / "images").iterdir()) == ["dehaze_demo", "derain_demo"]
    assert "| demo | derain |" in r.stdout and "| demo | dehaze |" in r.stdout
