"""README's before/after picture: one rainy, one noisy (σ=25) and one hazy image of the demo test
set, each as input | restored | target with its PSNR, restored by a checkpoint with the task's
default instruction.

    python -m utils.eval.figures --ckpt ckpt/demo/last.pt --demo data/demo --out docs/before_after.png
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
import torch

from utils.checkpoint import load_model
from utils.cli import ArgumentParser, cli_main
from utils.data.degradations import add_gaussian_noise, benchmark_noise_seed
from utils.data.image_io import read_image, write_image
from utils.metrics import psnr_ssim
from utils.text.bank import DEFAULT_INSTRUCTIONS
from utils.text.encoder_link import encoder_for_checkpoint

ROW_HEIGHT = 200
LABEL_HEIGHT = 22


def _rows(demo: Path) -> list[tuple[str, str, Path | None, Path]]:
    """(title, task, input file or None for σ=25 noise, target file) of each row."""
    test = demo / "test"
    return [
        ("rain", "derain", test / "derain/demo/input/coffee_crop.png", test / "derain/demo/target/coffee_crop.png"),
        ("noise σ=25", "denoise", None, test / "denoise/demo/motorcycle_crop.png"),
        ("haze", "dehaze", test / "dehaze/input/0001_0.8_0.2.jpg", test / "dehaze/target/0001.png"),
    ]


def _label(width: int, text: str) -> np.ndarray:
    banner = np.full((LABEL_HEIGHT, width, 3), 255, np.uint8)
    cv2.putText(banner, text, (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    return banner


def _fit(img: np.ndarray) -> np.ndarray:
    h, w = img.shape[:2]
    return cv2.resize(img, (round(w * ROW_HEIGHT / h), ROW_HEIGHT), interpolation=cv2.INTER_AREA)


def before_after(ckpt: Path, demo: Path, out: Path) -> list[dict]:
    """Write the picture and return, per row, the PSNR of the input and of the result."""
    model, state = load_model(ckpt)
    model.eval()
    encoder = encoder_for_checkpoint(ckpt, state, model.config.text_dim)
    lines, scores = [], []
    for title, task, lq_path, gt_path in _rows(demo):
        gt = read_image(gt_path)
        lq = read_image(lq_path) if lq_path else add_gaussian_noise(
            gt, 25, np.random.default_rng(benchmark_noise_seed(gt_path.name, 25)))  # the test set's own noisy input
        embedding = encoder.embed([DEFAULT_INSTRUCTIONS[task]])
        with torch.inference_mode():
            x = torch.from_numpy(lq.astype(np.float32) / 255).permute(2, 0, 1)[None]  # (1, 3, H, W)
            restored = model(x, embedding)[0].clamp(0, 1).permute(1, 2, 0).numpy()  # (H, W, 3)
        res = np.rint(restored * 255).astype(np.uint8)
        p_in = psnr_ssim(lq / 255.0, gt / 255.0)[0]
        p_out = psnr_ssim(res / 255.0, gt / 255.0)[0]
        scores.append({"row": title, "input_psnr": p_in, "psnr": p_out})
        cells = [_fit(lq), np.full((ROW_HEIGHT, 6, 3), 255, np.uint8), _fit(res),
                 np.full((ROW_HEIGHT, 6, 3), 255, np.uint8), _fit(gt)]
        row = np.concatenate(cells, axis=1)
        caption = (f"{title}: input {p_in:.1f} dB | restored with \"{DEFAULT_INSTRUCTIONS[task]}\" "
                   f"{p_out:.1f} dB | target")
        lines += [_label(row.shape[1], caption), row]
    width = max(line.shape[1] for line in lines)
    grid = np.concatenate([np.pad(line, ((0, 0), (0, width - line.shape[1]), (0, 0)), constant_values=255)
                           for line in lines])
    write_image(out, grid)
    return scores


def figures_main(argv: Sequence[str] | None) -> int:
    p = ArgumentParser(prog="python -m utils.eval.figures", description=__doc__.split("\n")[0])
    p.add_argument("--ckpt", default="ckpt/demo/last.pt", help="a checkpoint or release folder")
    p.add_argument("--demo", default="data/demo", help="the demo set built by utils.data.demo_data")
    p.add_argument("--out", default="docs/before_after.png")
    args = p.parse_args(argv)
    for score in before_after(Path(args.ckpt), Path(args.demo), Path(args.out)):
        print(f"{score['row']}: input {score['input_psnr']:.2f} dB -> {score['psnr']:.2f} dB")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(cli_main(figures_main))
