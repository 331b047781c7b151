"""--check_data: each known set counted against its published size, one line per set, the usual
mix-ups named, exit 0 only when every set is as published."""
from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import cv2
import numpy as np

import train
from tests.conftest import ROOT, smooth_image

_spec = importlib.util.spec_from_file_location("test_script", ROOT / "test.py")
test_script = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(test_script)


def png(rgb: np.ndarray) -> bytes:
    return cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))[1].tobytes()


def copies(folder: Path, names: list[str], data: bytes) -> None:
    """Many files of the same bytes: counting never decodes them, so this is fast."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_bytes(data)


def rain_pairs(folder: Path, n: int, rain: int, seed: int = 0) -> None:
    """``n`` input/target pairs whose inputs are the targets plus ``rain`` grey levels of streaks."""
    rng = np.random.default_rng(seed)
    for i in range(1, n + 1):
        gt = smooth_image(rng, 32, 32)
        lq = gt.astype(int)
        lq[:, ::4] += rain
        copies(folder / "target", [f"norain-{i}.png"], png(gt))
        copies(folder / "input", [f"rain-{i}.png"], png(np.clip(lq, 0, 255).astype(np.uint8)))


def report(capsys, rc: int) -> list[str]:
    out = capsys.readouterr()
    assert "Traceback" not in out.err and out.err.strip() == ""
    return out.out.strip().splitlines()


def test_a_test_root_as_published_passes(tmp_path, capsys):
    rain_pairs(tmp_path / "test/derain/Rain100L", 100, rain=20)  # light rain, input PSNR above 20 dB
    rc = test_script.main(["--test_root", str(tmp_path / "test"), "--mode", "derain", "--check_data"])
    lines = report(capsys, rc)
    assert rc == 0 and lines == [f"Rain100L ({tmp_path / 'test/derain/Rain100L'}): found 100 pairs, expected 100: ok"]


def test_the_common_test_set_mix_ups_are_named(tmp_path, capsys):
    root = tmp_path / "test"
    grey = png(np.repeat(smooth_image(np.random.default_rng(0), 16, 16)[..., :1], 3, axis=2))
    copies(root / "denoise/CBSD68", [f"{i}.png" for i in range(68)], grey)  # BSD68, the grey version
    colour = png(smooth_image(np.random.default_rng(1), 16, 16))
    copies(root / "denoise/Urban100", [f"img_{i:03d}_SRF_4_{kind}.png" for i in range(1, 101) for kind in ("HR", "LR")],
           colour)
    copies(root / "denoise/Kodak24", [f"{i}.png" for i in range(24)], colour)
    rain_pairs(root / "derain/Rain100L", 100, rain=200)  # heavy rain
    indoor = png(smooth_image(np.random.default_rng(2), 460, 620))
    copies(root / "dehaze/input", [f"{1400 + i // 10}_{i % 10 + 1}.png" for i in range(20)], indoor)
    copies(root / "dehaze/target", [f"{1400 + i}.png" for i in range(2)], indoor)
    rc = test_script.main(["--test_root", str(root), "--check_data"])
    lines = report(capsys, rc)
    assert rc == 2 and len(lines) == 5, lines
    by_set = {line.split(" (")[0]: line for line in lines}
    assert "found 68 images, expected 68" in by_set["CBSD68"] and "BSD68" in by_set["CBSD68"]
    assert "found 200 images, expected 100" in by_set["Urban100"] and "(HR)" in by_set["Urban100"]
    assert by_set["Kodak24"].endswith("not checked")
    assert "found 100 pairs, expected 100" in by_set["Rain100L"] and "Rain100H" in by_set["Rain100L"]
    assert "found 20 pairs, expected 500" in by_set["SOTS outdoor"] and "SOTS indoor" in by_set["SOTS outdoor"]


def test_a_set_nested_one_folder_too_deep_and_a_missing_set(tmp_path, capsys):
    root = tmp_path / "test"
    rain_pairs(root / "derain/Rain100L/Rain100L", 3, rain=20)
    rc = test_script.main(["--test_root", str(root), "--mode", "derain", "--check_data"])
    (line,) = report(capsys, rc)
    assert rc == 2 and "nested one folder too deep" in line and str(root / "derain/Rain100L/Rain100L") in line
    rc = test_script.main(["--test_root", str(root), "--mode", "dehaze", "--check_data"])
    (line,) = report(capsys, rc)
    assert rc == 2 and "SOTS outdoor" in line and "not found, expected 500: missing" in line


def test_training_sets_are_checked_and_their_mix_ups_named(tmp_path, capsys):
    root = tmp_path / "Train"
    data = png(smooth_image(np.random.default_rng(0), 8, 8))
    copies(root / "Denoise/BSD400", [f"{i}.jpg" for i in range(3)], data)
    copies(root / "Derain/rainy", [f"rain-{i}.png" for i in range(1, 1801)], data)  # the re-released heavy set
    copies(root / "Derain/gt", [f"norain-{i}.png" for i in range(1, 1801)], data)
    copies(root / "Dehaze/OTS/synthetic/part1", ["0001_0.8_0.04.jpg"], data)
    copies(root / "Dehaze/OTS/original", ["0001.jpg"], data)
    rc = train.main(["--data_root", str(root), "--check_data"])
    lines = report(capsys, rc)
    assert rc == 2 and len(lines) == 4, lines
    by_set = {line.split(" (")[0]: line for line in lines}
    assert "found 3 images, expected 400: fewer images than published" in by_set["BSD400"]
    assert "not found, expected 4,744: missing" in by_set["WED"]
    assert "found 1,800 pairs, expected 200" in by_set["Rain100L train"] and "JORDER" in by_set["Rain100L train"]
    assert "nested one folder too deep" in by_set["RESIDE OTS"] and "expected 72,135" in by_set["RESIDE OTS"]
    shutil.rmtree(root / "Derain")
    copies(root / "Derain/rainy", [f"rain-{i}.png" for i in range(1, 201)], data)
    copies(root / "Derain/gt", [f"norain-{i}.png" for i in range(1, 201)], data)
    rc = train.main(["--data_root", str(root), "--check_data", "--de_type", "derain"])
    assert rc == 0 and report(capsys, rc) == [f"Rain100L train ({root / 'Derain'}): found 200 pairs, expected 200: ok"]
