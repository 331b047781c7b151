"""Paired test sets drawn on your own photos: test.py's layout, each photo's own generator, never a
benchmark's name, never over a set already there."""
from __future__ import annotations

import numpy as np
import pytest
from conftest import smooth_image, write

from utils.data.image_io import read_image
from utils.eval import drawn_pairs
from utils.eval.benchmarks import find_test_sets


@pytest.fixture
def photos(tmp_path):
    rng = np.random.default_rng(0)
    for name in ("b.png", "a.jpg", "c.png"):
        write(tmp_path / "photos" / name, smooth_image(rng, 64, 80))
    return tmp_path / "photos"


@pytest.mark.parametrize("task", sorted(drawn_pairs.DRAWN))
def test_a_drawn_set_is_read_by_test_py_as_a_set_of_its_own_name(photos, tmp_path, task):
    out = tmp_path / "drawn"
    assert drawn_pairs.main(["--photos", str(photos), "--task", task, "--out", str(out), "--name", "mine"]) == 0
    sets, _ = find_test_sets(out, mode=task, crop16=False)
    assert [(s.task, s.name, len(s.pairs)) for s in sets] == [(task, "mine", 3)]
    for lq, gt in sets[0].pairs:
        assert lq.name == gt.name and lq.parent.name == "input" and gt.parent.name == "target"
        assert np.array_equal(read_image(gt), read_image(photos / gt.name) if (photos / gt.name).exists()
                              else read_image(photos / f"{gt.stem}.jpg"))
        assert np.abs(read_image(lq).astype(int) - read_image(gt).astype(int)).mean() > 0.5  # degraded
    assert not list(out.rglob("*.tmp*"))  # no temporary folder left behind


def test_each_photo_gets_the_same_degradation_in_any_order_and_seed_changes_it():
    photo = smooth_image(np.random.default_rng(1), 64, 64)
    one = drawn_pairs.draw_pair(photo, "x.png", "derain")
    assert np.array_equal(one, drawn_pairs.draw_pair(photo, "x.png", "derain"))
    assert not np.array_equal(one, drawn_pairs.draw_pair(photo, "y.png", "derain"))
    assert not np.array_equal(one, drawn_pairs.draw_pair(photo, "x.png", "derain", seed=1))


def test_bad_requests_get_one_line_and_nothing_is_overwritten(photos, tmp_path, capsys):
    out = tmp_path / "drawn"
    base = ["--photos", str(photos), "--task", "derain", "--out", str(out)]
    assert drawn_pairs.main([*base, "--name", "Rain100L"]) == 2
    assert "may not take a benchmark's" in capsys.readouterr().err and not out.exists()
    assert drawn_pairs.main([*base, "--name", "input"]) == 2
    assert drawn_pairs.main([*base, "--name", "mine", "--max_images", "1"]) == 0
    before = sorted(p.read_bytes() for p in out.rglob("*.png"))
    capsys.readouterr()
    assert drawn_pairs.main([*base, "--name", "mine"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "already there" in err and "mine" in err
    assert sorted(p.read_bytes() for p in out.rglob("*.png")) == before
    assert drawn_pairs.main(["--photos", str(tmp_path / "none"), "--task", "derain", "--out", str(out),
                             "--name", "x"]) == 2
    assert "no such folder of images" in capsys.readouterr().err
    write(photos / "b.jpg", smooth_image(np.random.default_rng(2), 64, 64))
    assert drawn_pairs.main([*base, "--name", "twice"]) == 2
    assert "share the name 'b'" in capsys.readouterr().err and not (out / "derain" / "twice").exists()
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "broken.png").write_bytes(b"not an image")
    assert drawn_pairs.main(["--photos", str(tmp_path / "bad"), "--task", "dehaze", "--out", str(out),
                             "--name", "broken"]) == 2
    assert "broken.png" in capsys.readouterr().err and not (out / "dehaze" / "broken").exists()
    assert drawn_pairs.main([*base, "--name", "x", "--task", "denoise"]) == 2  # noise is drawn at test time
