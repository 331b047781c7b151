"""A paired test set drawn on your own clean photos, for development where the real set is missing
or to see a route on other content: Rain100L-like rain, OTS-like haze, the demo's camera shake or
short exposure (``utils.data.degradations.DRAWN``, calibrated in docs/benchmarks/calibration.md).

    python -m utils.eval.drawn_pairs --photos DIR --task derain --out ROOT --name NAME [--seed S]

writes ``ROOT/<task>/NAME/{input,target}/<photo>.png``, the layout test.py reads (test/README.md):
the target is the photo as decoded, the input the photo with the degradation drawn on it. Each photo
has its own generator, seeded by its file name and ``--seed``, so it gets the same degradation in any
listing order. The set appears whole or not at all, and one already there is never overwritten.

Drawn rain is not Rain100L: a set may not take a benchmark's name, which test.py would report as
that benchmark.
"""
from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from utils.atomic import new_folder
from utils.cli import ArgumentParser, cli_main, int_in, run_name, writable_folder
from utils.data.degradations import DRAWN, benchmark_noise_seed
from utils.data.image_io import read_image, write_image
from utils.data.layouts import list_images
from utils.errors import UserError
from utils.eval.benchmarks import PAPER_SETS

RESERVED = ("input", "target", "low", "high")  # folder names of a set laid out directly in its task folder


def draw_pair(photo: np.ndarray, name: str, task: str, seed: int = 0) -> np.ndarray:
    """The uint8 H x W x 3 input that shows ``task``'s degradation on ``photo``, from the generator
    of the photo's file ``name`` and ``seed``."""
    # the stable hash of the file name that seeds the protocol's test noise, at no noise level (0)
    return DRAWN[task](np.ascontiguousarray(photo), np.random.default_rng([benchmark_noise_seed(name, 0), seed]))


def check_set_name(name: str) -> None:
    """A one-line UserError for a set name test.py would misread: a benchmark's or a layout folder's."""
    taken = {n.lower() for names in PAPER_SETS.values() for n in names} | set(RESERVED)
    if name.lower() in taken:
        raise UserError(f"--name {name}: a drawn set may not take a benchmark's or a layout folder's name "
                        f"({', '.join(sorted(taken))}); name it after its photos, e.g. --name BSD_rain")


def write_drawn_set(photos: Sequence[Path], task: str, set_dir: Path, seed: int = 0) -> int:
    """Write the pairs of ``photos`` under ``set_dir/{input,target}/`` as one new folder; returns the count."""
    stems = [p.stem for p in photos]
    twice = sorted({s for s in stems if stems.count(s) > 1})
    if twice:
        raise UserError(f"{photos[0].parent}: two photos share the name {twice[0]!r} (e.g. .jpg and .png); "
                        "keep one of them, the pairs are written as <name>.png")
    with new_folder(set_dir, replace=False) as tmp:
        for path in photos:
            photo = read_image(path)
            write_image(tmp / "target" / f"{path.stem}.png", photo, replace=False)
            write_image(tmp / "input" / f"{path.stem}.png", draw_pair(photo, path.name, task, seed), replace=False)
    return len(photos)


def drawn_pairs_main(argv: Sequence[str] | None) -> int:
    p = ArgumentParser(prog="python -m utils.eval.drawn_pairs", description=__doc__.split("\n\n")[0])
    p.add_argument("--photos", required=True, help="a folder of clean photos (e.g. BSD400)")
    p.add_argument("--task", required=True, choices=sorted(DRAWN), help="the degradation to draw")
    p.add_argument("--out", required=True, help="the test-layout root to write into (e.g. test/drawn)")
    p.add_argument("--name", required=True, type=run_name, help="the set's name (a new folder under OUT/TASK)")
    p.add_argument("--max_images", type=int_in(1), default=None, help="the first N photos only")
    p.add_argument("--seed", type=int_in(0), default=0)
    args = p.parse_args(argv)
    check_set_name(args.name)
    folder = Path(args.photos)
    photos = list_images(folder) if folder.is_dir() else []
    if not photos:
        raise UserError(f"--photos {folder}: no such folder of images; pass a folder of clean photos")
    set_dir = Path(args.out) / args.task / args.name
    if set_dir.exists():
        raise UserError(f"{set_dir}: already there; pass another --name or --out")
    writable_folder(Path(args.out), "--out", "the drawn set")
    n = write_drawn_set(photos[:args.max_images], args.task, set_dir, args.seed)
    print(f"{set_dir}: {n} {args.task} pairs drawn on {folder}; score them with "
          f"python test.py --ckpt CKPT --test_root {args.out} --mode {args.task}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return cli_main(drawn_pairs_main, argv)


if __name__ == "__main__":
    sys.exit(main())
