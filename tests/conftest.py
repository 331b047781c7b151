"""Shared fixtures: a tiny training/test layout in the paper's folder structure and an
instruction-encoder folder (the packaged MiniLM with an untrained head)."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

TINY_NET = ["--dim", "8", "--num_blocks", "1", "1", "1", "1", "--num_refinement_blocks", "1",
            "--heads", "1", "1", "1", "1"]


def smooth_image(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A smooth random RGB uint8 image (low-frequency noise, upsampled)."""
    small = rng.uniform(0, 255, (max(h // 8, 2), max(w // 8, 2), 3)).astype(np.float32)
    return np.clip(cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC), 0, 255).astype(np.uint8)


def write(path: Path, rgb: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


def write_derain_pair(train: Path, i: int, gt: np.ndarray) -> None:
    """Training pair ``i`` in the Rain100L layout under ``train``: ``Derain/gt/norain-i.png`` and
    ``Derain/rainy/rain-i.png`` (the "rain": 40 grey levels brighter)."""
    write(train / "Derain/gt" / f"norain-{i}.png", gt)
    write(train / "Derain/rainy" / f"rain-{i}.png", np.clip(gt.astype(int) + 40, 0, 255).astype(np.uint8))


def write_dehaze_pair(train: Path, i: int, gt: np.ndarray, ext: str = ".png") -> None:
    """Training pair ``i`` in the OTS layout under ``train``: ``Dehaze/original/<i>`` and its hazy
    ``Dehaze/synthetic/part1/<i>_0.8_0.08`` (a flat haze of light 230 at transmission 0.6)."""
    write(train / "Dehaze/original" / f"{i:04d}{ext}", gt)
    write(train / "Dehaze/synthetic/part1" / f"{i:04d}_0.8_0.08{ext}", (gt * 0.6 + 0.4 * 230).astype(np.uint8))


@pytest.fixture(scope="session")
def tiny_layout(tmp_path_factory) -> Path:
    """``root/Train/{Denoise,Derain,Dehaze}`` and ``root/test/{denoise,derain,dehaze}``."""
    root = tmp_path_factory.mktemp("layout")
    rng = np.random.default_rng(0)
    for i in range(4):
        write(root / "Train/Denoise" / f"{i:03d}.png", smooth_image(rng, 40, 48))
    for i in range(1, 4):
        write_derain_pair(root / "Train", i, smooth_image(rng, 40, 40))
    for i in range(1, 4):
        write_dehaze_pair(root / "Train", i, smooth_image(rng, 40, 40), ".jpg")
    for i in range(2):
        write(root / "test/denoise/CBSD68" / f"{i}.png", smooth_image(rng, 35, 50))
        gt = smooth_image(rng, 33, 47)
        write(root / "test/derain/Rain100L/target" / f"{i}.png", gt)
        write(root / "test/derain/Rain100L/input" / f"{i}.png", np.clip(gt.astype(int) + 30, 0, 255).astype(np.uint8))
        gt = smooth_image(rng, 32, 32)
        write(root / "test/dehaze/target" / f"{i + 1:04d}.png", gt)
        write(root / "test/dehaze/input" / f"{i + 1:04d}_0.8_0.2.jpg", (gt * 0.5 + 100).astype(np.uint8))
    return root


@pytest.fixture(scope="session")
def text_ckpt(tmp_path_factory) -> Path:
    """An instruction-encoder folder as ``train.py --stage text`` writes it (head not trained: it
    reads every request as denoise, so that a request is never refused by chance)."""
    import torch

    from net.text_encoder import InstructionEncoder

    out = tmp_path_factory.mktemp("text_encoder")
    encoder = InstructionEncoder(None)
    with torch.no_grad():
        encoder.head.weight.zero_()
        encoder.head.bias.copy_(torch.tensor([3.0, -3.0, -3.0, -3.0, -3.0]))
    encoder.save(out)
    return out


TINY_CONFIG = dict(text_dim=384, dim=8, num_blocks=(1, 1, 1, 1), num_refinement_blocks=1, heads=(1, 1, 1, 1))


@pytest.fixture(scope="session")
def tiny_ckpt(tmp_path_factory, text_ckpt) -> Path:
    """A dim-8 restoration checkpoint (random weights) that records the test instruction-encoder folder."""
    import torch

    from net.model import ModelConfig, TextPromptIR
    from utils.checkpoint import save_checkpoint

    torch.manual_seed(0)
    net = TextPromptIR(ModelConfig(**TINY_CONFIG))
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    save_checkpoint(path, {"model": net.state_dict(), "config": net.config.to_dict(),
                           "text_encoder": {"dir": str(text_ckpt), "id": "test"}})
    return path


def png_claiming(path: Path, width: int, height: int) -> Path:
    """A few-hundred-byte PNG whose header claims ``width`` x ``height`` pixels (its pixel data is a
    stub): what a decompression bomb, or a huge photo, looks like to a header reader."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))
    return path


def tiny_bank(folder: Path) -> Path:
    """An instruction bank small enough that fine-tuning on it takes a second."""
    folder.mkdir(parents=True)
    (folder / "train.tsv").write_text("instruction\ttask\nremove the noise\tdenoise\nremove the rain\tderain\n"
                                      "remove the fog\tdehaze\n", encoding="utf-8")
    (folder / "val.tsv").write_text("instruction\ttask\nreduce the grain\tdenoise\nrainy photo\tderain\n"
                                    "hazy hills\tdehaze\n", encoding="utf-8")
    (folder / "unrelated.txt").write_text("make me a sandwich\n", encoding="utf-8")
    return folder
