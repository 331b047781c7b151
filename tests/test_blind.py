"""The blind route: with no instruction the image's degradations decide what is restored (demo.py,
the engine), a clean photo is left as it is, a contradicting photo warns, and test.py --blind
scores it beside the instruction route."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

import demo
from net.degradation_classifier import DegradationClassifier
from tests.conftest import ROOT, smooth_image, write
from utils.checkpoint import load_checkpoint, save_checkpoint
from utils.errors import UserError
from utils.runtime import engine
from utils.runtime.engine import Restorer
from utils.tasks import restore_order

_spec = importlib.util.spec_from_file_location("test_script", ROOT / "test.py")
test_script = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(test_script)


def with_classifier(tiny_ckpt: Path, folder: Path) -> Path:
    """The tiny checkpoint with an (untrained) degradation classifier stored in it."""
    ckpt = load_checkpoint(tiny_ckpt)
    net = DegradationClassifier()
    ckpt["classifier"] = {"labels": list(net.labels), "config": {}, "state": net.state_dict()}
    path = folder / "reads_images.pt"
    save_checkpoint(path, ckpt)
    return path


@pytest.fixture
def sees(monkeypatch):
    """Make the classifier report the given probabilities for every image."""
    def set_reading(**probs: float) -> None:
        monkeypatch.setattr(engine, "predict_degradations",
                            lambda net, image, max_crops=16, what="the image": dict(probs))
    return set_reading


@pytest.fixture
def blind(tiny_ckpt, tmp_path):
    """A restorer on a checkpoint with a degradation classifier, and a 40x48 photo for it."""
    rgb = np.random.default_rng(0).random((40, 48, 3), dtype=np.float32)
    return Restorer(with_classifier(tiny_ckpt, tmp_path), "cpu"), rgb


def test_no_instruction_restores_what_the_image_shows_in_order(blind, sees):
    restorer, rgb = blind
    sees(denoise=0.91, derain=0.97, dehaze=0.02)
    plan = restorer.plan(None, None, rgb, what="x.png")
    assert [s.task for s in plan.steps] == list(restore_order(("denoise", "derain")))
    first, second = restore_order(("denoise", "derain"))
    assert plan.lines == [f"x.png looks like noise (0.91) and rain (0.97); restoring {first} then {second}"]
    assert restorer.plan(None, "auto", rgb, what="x.png").lines == plan.lines
    done = restorer.restore(rgb, plan)
    assert done.rgb.shape == rgb.shape and done.lines == [f"step 1/2: {first}", f"step 2/2: {second}"]


def test_a_clean_photo_is_reported_and_left_unchanged(blind, sees):
    restorer, rgb = blind
    sees(denoise=0.1, derain=0.2, dehaze=0.05)
    plan = restorer.plan(None, None, rgb, what="x.png")
    assert plan.steps == [] and "looks clean" in plan.lines[0] and "left unchanged" in plan.lines[0]
    assert np.array_equal(restorer.restore(rgb, plan).rgb, rgb)


def test_an_image_that_contradicts_the_instruction_warns_and_the_instruction_wins(blind, sees):
    restorer, rgb = blind
    sees(denoise=0.02, derain=0.03, dehaze=0.96)
    plan = restorer.plan("please reduce the noise", None, rgb)  # the test encoder reads denoise
    assert [s.task for s in plan.steps] == ["denoise"]
    assert len(plan.warnings) == 1 and "noise" in plan.warnings[0] and "haze (0.96)" in plan.warnings[0]
    sees(denoise=0.6, derain=0.03, dehaze=0.96)  # the image shows the noise too: no disagreement
    assert restorer.plan("please reduce the noise", None, rgb).warnings == []


def test_a_checkpoint_without_a_classifier_says_in_one_line_what_to_do(tiny_ckpt, tmp_path):
    restorer = Restorer(tiny_ckpt, "cpu")
    with pytest.raises(UserError, match=r"cannot read images .* --stage classifier --resume"):
        restorer.plan(None, None)
    src = tmp_path / "in"
    write(src / "a.png", smooth_image(np.random.default_rng(0), 32, 32))
    code = demo.main(["--ckpt", str(tiny_ckpt), "--input", str(src), "--output", str(tmp_path / "out"),
                      "--no_progress", "--device", "cpu"])
    assert code == 2 and not any((tmp_path / "out").glob("*.png"))


def test_demo_without_instruction_prints_what_each_photo_looks_like(tiny_ckpt, tmp_path, sees, capsys):
    ckpt = with_classifier(tiny_ckpt, tmp_path)
    src = tmp_path / "in"
    write(src / "a.png", smooth_image(np.random.default_rng(0), 40, 40))
    sees(denoise=0.05, derain=0.97, dehaze=0.1)
    assert demo.main(["--ckpt", str(ckpt), "--input", str(src), "--output", str(tmp_path / "out"),
                      "--no_progress", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert f"{src / 'a.png'} looks like rain (0.97)" in out and (tmp_path / "out" / "a.png").is_file()


def test_test_py_blind_scores_each_set_and_reports_what_was_read(tiny_layout, tiny_ckpt, tmp_path, sees, capsys):
    ckpt = with_classifier(tiny_ckpt, tmp_path)
    sees(denoise=0.9, derain=0.1, dehaze=0.1)
    common = ["--ckpt", str(ckpt), "--test_root", str(tiny_layout / "test"), "--output_dir", str(tmp_path),
              "--num_workers", "0", "--no_progress", "--device", "cpu"]
    assert test_script.main(common) == 0
    capsys.readouterr()
    assert test_script.main([*common, "--blind"]) == 0
    out = capsys.readouterr().out
    assert "CBSD68 σ=15: PSNR" in out and "read as denoise in 100%" in out and "read as derain in 0%" in out
    report = out[out.index("| Set | Instruction route PSNR | Blind route PSNR | Read exactly |"):]
    rain = next(line for line in report.splitlines() if line.startswith("| Rain100L"))
    assert rain.count("|") == 5 and rain.split("|")[2].strip() not in ("", "—")  # the text route's PSNR beside it
    assert "| derain |" in report.split("read as")[-1]  # the confusion has a row per true set


def test_test_py_blind_without_a_classifier_is_one_line(tiny_layout, tiny_ckpt, tmp_path, capsys):
    assert test_script.main(["--ckpt", str(tiny_ckpt), "--test_root", str(tiny_layout / "test"), "--output_dir",
                             str(tmp_path), "--blind", "--no_progress", "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--blind needs a checkpoint that can read images" in err[0]


def test_the_classifier_reading_is_bounded_for_a_large_image(tiny_ckpt, tmp_path):
    """A real (untrained) classifier on a large photo: every label gets a probability."""
    restorer = Restorer(with_classifier(tiny_ckpt, tmp_path), "cpu")
    probs = restorer.read_image(np.random.default_rng(0).random((900, 1300, 3), dtype=np.float32))
    assert set(probs) == {"denoise", "derain", "dehaze"} and all(0 <= p <= 1 for p in probs.values())
    with pytest.raises(UserError, match="too small to classify"):
        restorer.read_image(np.zeros((20, 300, 3), np.float32), "tiny.png")


def test_a_five_task_checkpoint_reads_blur_and_darkness_and_restores_them(tiny_ckpt, tmp_path, sees):
    from utils.tasks import DEGRADATION_CHOICES, TASKS

    ckpt = load_checkpoint(tiny_ckpt)
    ckpt["options"] = {**(ckpt.get("options") or {}), "de_type": list(DEGRADATION_CHOICES)}
    net = DegradationClassifier(TASKS)
    ckpt["classifier"] = {"labels": list(net.labels), "config": {}, "state": net.state_dict()}
    save_checkpoint(tmp_path / "five.pt", ckpt)
    restorer = Restorer(tmp_path / "five.pt", "cpu")
    rgb = np.random.default_rng(0).random((40, 48, 3), dtype=np.float32)
    sees(denoise=0.1, derain=0.05, dehaze=0.02, deblur=0.93, lowlight=0.81)
    plan = restorer.plan(None, None, rgb, what="x.png")
    order = restore_order(("deblur", "lowlight"))
    assert [s.task for s in plan.steps] == list(order)
    assert plan.lines[0].startswith("x.png looks like blur (0.93) and darkness (0.81)")
    sees(denoise=0.1, derain=0.05, dehaze=0.02, deblur=0.03, lowlight=0.97)
    assert [s.task for s in restorer.plan(None, "auto", rgb).steps] == ["lowlight"]
    three = Restorer(with_classifier(tiny_ckpt, tmp_path), "cpu")  # a three-task checkpoint never plans them
    sees(denoise=0.1, derain=0.05, dehaze=0.02, deblur=0.93, lowlight=0.81)
    assert three.plan(None, None, rgb).steps == []


def test_test_py_blind_records_what_each_image_was_read_as_and_reads_older_results(
        tiny_layout, tiny_ckpt, tmp_path, sees, capsys):
    import csv
    import json

    ckpt = with_classifier(tiny_ckpt, tmp_path)
    common = ["--ckpt", str(ckpt), "--test_root", str(tiny_layout / "test"), "--output_dir", str(tmp_path),
              "--name", "r", "--mode", "derain", "--num_workers", "0", "--no_progress", "--device", "cpu"]
    assert test_script.main(common) == 0
    stored = tmp_path / "r" / "results.json"
    old = json.loads(stored.read_text())  # as the previous format wrote it: no read_as anywhere
    assert old["format"] == "textpromptir-results/2"
    stored.write_text(json.dumps({**old, "format": "textpromptir-results/1"}))
    sees(denoise=0.9, derain=0.8, dehaze=0.1)
    assert test_script.main([*common, "--blind"]) == 0
    capsys.readouterr()
    with open(tmp_path / "r" / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    by_route = {route: [r["read_as"] for r in rows if r["route"] == route] for route in ("instruction", "blind")}
    assert by_route["instruction"] and set(by_route["instruction"]) == {""}
    assert by_route["blind"] and set(by_route["blind"]) == {"denoise+derain"}
    assert json.loads(stored.read_text())["format"] == "textpromptir-results/2"


def test_an_unsure_reading_is_said_on_the_line_and_kept_for_the_page(blind, sees):
    from net.degradation_classifier import CLEAR, THRESHOLD, UNSURE_MARGIN

    restorer, rgb = blind
    just = THRESHOLD + UNSURE_MARGIN / 2
    sees(denoise=(THRESHOLD + UNSURE_MARGIN + CLEAR) / 2, derain=just, dehaze=0.02)  # rain: read, but only just
    plan = restorer.plan(None, None, rgb, what="x.png")
    assert {s.task for s in plan.steps} == {"denoise", "derain"} and plan.unsure == ("derain",)
    assert plan.lines[0].endswith(f"; unsure about rain ({just:.2f})")
    sees(denoise=0.95, derain=just, dehaze=0.02)  # beside noise read clearly, the unsure rain is left alone
    plan = restorer.plan(None, None, rgb, what="x.png")
    assert [s.task for s in plan.steps] == ["denoise"] and plan.unsure == ("derain",)
    assert plan.lines[0].endswith(f"; unsure about rain ({just:.2f}), rain left alone beside the clear reading")
    sees(denoise=0.05, derain=0.1, dehaze=THRESHOLD - UNSURE_MARGIN / 2)  # haze: not read, but only just
    plan = restorer.plan(None, None, rgb, what="x.png")
    assert plan.steps == [] and plan.unsure == ("dehaze",)
    assert "left unchanged; unsure about haze" in plan.lines[0]
    assert np.array_equal(restorer.restore(rgb, plan).rgb, rgb)  # a clean reading leaves it unchanged
    sees(denoise=0.95, derain=0.02, dehaze=0.03)
    assert restorer.plan(None, None, rgb).unsure == () and "unsure" not in restorer.plan(None, None, rgb).lines[0]
