"""Do no harm: how much each task's pass changes a photo that does not show that task's degradation,
as PSNR(output, input) in dB (higher: left more as it was; identical: inf).

    python -m utils.eval.no_harm --ckpt ckpt/demo/last.pt --photos ../shared/datasets/Kodak24

Rows: each task's pass of the checkpoint (its default instruction). Columns: the photos clean, then
with each other degradation the checkpoint knows, drawn as the training set draws it (noise at
sigma 25 as the test protocol adds it, rain like Rain100L, OTS haze over the photo's depth proxy, the
demo's blur and darkness), seeded by the photo's name. The pass for the photo's own degradation is
not a do-no-harm case and is left out. Each cell: the mean over the photos and the worst photo.
"""
from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from utils.cli import ArgumentParser, cli_main, int_in, writable_folder
from utils.data.degradations import DRAWN, add_gaussian_noise, benchmark_noise_seed
from utils.data.image_io import read_image
from utils.data.layouts import list_images
from utils.errors import UserError
from utils.runtime.device import DEVICE_CHOICES
from utils.runtime.engine import Restorer
from utils.tables import header, row

CLEAN = "clean"
NOISE_SIGMA = 25  # the protocol's middle level
# a photo showing each task's degradation, from a clean uint8 photo and a generator
DEGRADE: dict[str, Callable[[np.ndarray, np.random.Generator], np.ndarray]] = {
    "denoise": lambda img, rng: add_gaussian_noise(img, NOISE_SIGMA, rng),
    **DRAWN,
}


def conditions(photo: np.ndarray, name: str, tasks: Sequence[str]) -> dict[str, np.ndarray]:
    """The photo clean and with each degradation of ``tasks``, seeded by its file name."""
    out = {CLEAN: photo}
    for t in tasks:
        rng = np.random.default_rng(benchmark_noise_seed(name, NOISE_SIGMA) + len(out))
        out[t] = DEGRADE[t](np.ascontiguousarray(photo), rng)
    return out


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two images in [0, 1]; inf when they are identical."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10.0 * float(np.log10(1.0 / mse))


def measure(passes: Callable[[str, np.ndarray], np.ndarray], tasks: Sequence[str],
            photos: Sequence[Path], others: int | None = None) -> dict[str, dict[str, list[float]]]:
    """{task's pass: {condition: [PSNR(output, input) per photo]}}; ``passes(task, rgb)`` runs one pass
    on an H x W x 3 float image in [0, 1]. Every photo is scored clean, the first ``others`` (None:
    all) also with each other degradation."""
    out: dict[str, dict[str, list[float]]] = {t: {} for t in tasks}
    for k, path in enumerate(photos):
        shown = conditions(read_image(path), path.name, tasks if others is None or k < others else ())
        for cond, img in shown.items():
            rgb = img.astype(np.float32) / 255.0
            for t in tasks:
                if t != cond:
                    res = np.clip(passes(t, rgb), 0.0, 1.0)
                    out[t].setdefault(cond, []).append(psnr(res, rgb))
    return out


def table(scores: dict[str, dict[str, list[float]]]) -> str:
    """Markdown: rows the passes, columns the conditions; cells 'mean / worst' in dB."""
    conds = list(dict.fromkeys(c for per in scores.values() for c in per))
    lines = header(["pass \\ photo", *conds])
    for t, per in scores.items():
        lines.append(row([t, *(f"{np.mean(per[c]):.2f} / {min(per[c]):.2f}" if c in per else "—" for c in conds)]))
    return "\n".join(lines)


def no_harm_main(argv: Sequence[str] | None) -> int:
    p = ArgumentParser(prog="python -m utils.eval.no_harm", description=__doc__.split("\n\n")[0])
    p.add_argument("--ckpt", required=True, help="a text-conditioned restoration checkpoint")
    p.add_argument("--photos", required=True, help="a folder of clean photos (e.g. Kodak24)")
    p.add_argument("--max_images", type=int_in(1), default=None, help="the first N photos only")
    p.add_argument("--others", type=int_in(0), default=None,
                   help="score only the first N photos with the other degradations (default: all)")
    p.add_argument("--json", default=None, help="also write the per-photo PSNRs to this new JSON file")
    p.add_argument("--device", default="cpu", choices=DEVICE_CHOICES)
    args = p.parse_args(argv)
    folder = Path(args.photos)
    photos = list_images(folder) if folder.is_dir() else []
    if not photos:
        raise UserError(f"--photos {folder}: no such folder of images; pass a folder of clean photos")
    if args.json:
        if Path(args.json).exists():
            raise UserError(f"--json {args.json}: already there; pass a new file name")
        writable_folder(Path(args.json).parent, "--json", "the scores")
    restorer = Restorer(args.ckpt, args.device, precision="fp32")
    if not restorer.conditioned:
        raise UserError(f"{args.ckpt}: a plain Restormer has one pass, not one per task; pass a text-conditioned one")
    plans = {t: restorer.plan(task=t) for t in restorer.tasks}
    scores = measure(lambda t, rgb: restorer.restore(rgb, plans[t]).rgb, restorer.tasks,
                     photos[:args.max_images], args.others)
    n = len(photos[:args.max_images])
    print(f"{args.ckpt}: PSNR(output, input) in dB, mean / worst over {n} photos of {folder} "
          f"({min(n, n if args.others is None else args.others)} of them with the other degradations)")
    print(table(scores))
    if args.json:
        tmp = Path(args.json + ".tmp")
        tmp.write_text(json.dumps(scores, indent=1))
        tmp.replace(args.json)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return cli_main(no_harm_main, argv)


if __name__ == "__main__":
    sys.exit(main())
