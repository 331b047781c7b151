"""README's before/after picture (utils/eval/figures.py): three rows (rain, σ=25 noise, haze), each
input | restored | target, with the PSNRs printed on it."""
from __future__ import annotations

import numpy as np

from tests.conftest import smooth_image, write
from utils.data.image_io import read_image
from utils.eval import figures


def test_the_picture_has_a_row_per_task_and_honest_psnrs(tmp_path, tiny_ckpt):
    rng = np.random.default_rng(0)
    for _, _, lq, gt in figures._rows(tmp_path / "demo"):
        clean = smooth_image(rng, 64, 96)
        write(gt, clean)
        if lq is not None:
            write(lq, np.clip(clean.astype(int) + 40, 0, 255).astype(np.uint8))  # a brighter "degraded" copy
    out = tmp_path / "picture.png"
    scores = figures.before_after(tiny_ckpt, tmp_path / "demo", out)
    assert [s["row"] for s in scores] == ["rain", "noise σ=25", "haze"]
    assert 19.5 < scores[1]["input_psnr"] < 21.5  # σ=25 noise on 8-bit images is about 20.2 dB
    assert 16.0 < scores[0]["input_psnr"] < 17.5  # +40 grey levels: 20 log10(255 / 40) = 16.1 dB, more where clipped
    assert all(np.isfinite(s["psnr"]) for s in scores)
    picture = read_image(out)
    assert picture.shape[0] == 3 * (figures.ROW_HEIGHT + figures.LABEL_HEIGHT)
