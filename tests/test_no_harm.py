"""The do-no-harm measurement: each task's pass on photos without that task's degradation."""
from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import smooth_image, write

from utils.eval import no_harm


@pytest.fixture
def photos(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(2):
        write(tmp_path / "photos" / f"{i}.png", smooth_image(rng, 40, 48))
    return tmp_path / "photos"


def test_each_pass_is_scored_on_every_photo_but_its_own_degradation(photos):
    tasks = ("denoise", "derain", "dehaze")
    same = no_harm.measure(lambda t, rgb: rgb, tasks, sorted(photos.iterdir()))
    assert {t: sorted(per) for t, per in same.items()} == {
        "denoise": ["clean", "dehaze", "derain"], "derain": ["clean", "dehaze", "denoise"],
        "dehaze": ["clean", "denoise", "derain"]}
    assert all(v == [float("inf")] * 2 for per in same.values() for v in per.values())  # left as it was
    shifted = no_harm.measure(lambda t, rgb: rgb * 0 + 0.5 if t == "dehaze" else rgb, tasks, sorted(photos.iterdir()))
    assert max(shifted["dehaze"]["clean"]) < 20 and shifted["derain"]["clean"] == [float("inf")] * 2
    some = no_harm.measure(lambda t, rgb: rgb, tasks, sorted(photos.iterdir()), others=1)
    assert len(some["derain"]["clean"]) == 2 and len(some["derain"]["denoise"]) == 1
    text = no_harm.table(shifted)
    assert text.splitlines()[0] == "| pass \\ photo | clean | derain | dehaze | denoise |"
    assert text.splitlines()[2].startswith("| denoise | inf / inf | inf / inf | inf / inf | — |")


def test_no_harm_runs_a_checkpoint_and_refuses_bad_options_in_one_line(tiny_ckpt, photos, tmp_path, capsys):
    out = tmp_path / "scores.json"
    assert no_harm.main(["--ckpt", str(tiny_ckpt), "--photos", str(photos), "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| derain |" in printed and set(json.loads(out.read_text())) == {"denoise", "derain", "dehaze"}
    for bad in (["--photos", str(tmp_path / "none")], ["--json", str(out)], ["--max_images", "0"]):
        argv = ["--ckpt", str(tiny_ckpt), "--photos", str(photos), *bad]
        assert no_harm.main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and bad[0] in err
