"""How well the degradation classifier of a checkpoint reads whole images (the blind route's
decision), over three groups, each set scored on its own with its confusion:

    python -m utils.eval.blind_accuracy --ckpt ckpt/demo/last.pt --photos DIR [DIR ...] \
        [--test_root data/demo/test] [--real derain=DIR ...]

* the protocol's noise (sigma 15, 25, 50, added to the 8-bit photo and seeded by its file name, as
  test.py adds it) on the CLEAN photos of ``--photos``;
* real degraded inputs: the derain / dehaze / ... and composite sets of the test layout
  ``--test_root`` and folders given as ``--real TASKS=DIR`` (e.g. ``derain=RainTrainL10/rainy``);
* the clean photos themselves, which should be read as clean.

Each image is read as the blind route reads it (``predict_degradations``, then ``shown``: the labels
above the threshold, less the unsure ones beside one read clearly). An image with a probability inside the
unsure band (``net.degradation_classifier.UNSURE_MARGIN``) is also counted as unsure.

``--crops`` instead scores generated crops of ``--size`` pixels, ``--per_set`` for every label set
(clean, each task alone and every composite of up to three), degraded by the project's synthesisers
with the paper's noise levels, OTS's haze ranges and the demo set's blur and darkness, from
generators seeded apart from training; exact duplicates among the photos are dropped.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from net.degradation_classifier import (
    MIN_SIDE,
    THRESHOLD,
    DegradationClassifier,
    predict_degradations,
    shown,
    unsure,
)
from utils.checkpoint import load_checkpoint, load_classifier
from utils.cli import ArgumentParser, cli_main, int_in, writable_folder
from utils.data.classifier_samples import (
    Source,
    all_label_sets,
    load_clean,
    set_name,
    test_samples,
)
from utils.data.image_io import read_image
from utils.data.layouts import list_images
from utils.errors import UserError
from utils.eval.benchmarks import BenchmarkSet, find_test_sets
from utils.tasks import join_tasks, split_tasks

OTHER = "other"  # a predicted set larger than any label set (classifier_samples.MAX_COMBINED)
TEST_SEED = 1000  # training seeds are small numbers; these generators are apart from them


def photo_sources(folders: Sequence[Path | str], min_side: int) -> list[Source]:
    """The clean photos under ``folders`` (recursively, duplicates dropped) at least ``min_side`` on
    each side; UserError for a folder that is missing or holds none."""
    paths = []
    for folder in map(Path, folders):
        if not folder.is_dir():
            raise UserError(f"--photos {folder}: no such folder; pass folders of clean photos")
        found = list_images(folder)
        if not found:
            raise UserError(f"--photos {folder}: no images found; pass folders of clean photos")
        paths += found
    sources = [s for s in load_clean(paths) if min(s.image.shape[:2]) >= min_side]
    if not sources:
        raise UserError(f"--photos: no photo is at least {min_side}x{min_side} pixels; pass larger photos or a "
                        "smaller --size")
    return sources


@torch.no_grad()
def crop_probabilities(net: DegradationClassifier, samples: Sequence[dict], batch: int = 100) -> np.ndarray:
    """N x L probabilities of equal-sized crops, read whole (one forward each)."""
    x = torch.from_numpy(np.stack([s["image"] for s in samples])).permute(0, 3, 1, 2).float().div_(255.0)
    net.eval()
    return torch.cat([torch.sigmoid(net(x[i:i + batch])) for i in range(0, len(x), batch)]).numpy()


def scores(prob: np.ndarray, samples: Sequence[dict], labels: Sequence[str]) -> dict:
    """Exact-set accuracy (overall and per set), per-label accuracy and errors, the set confusion."""
    target = np.stack([s["target"] for s in samples])
    pred = prob > THRESHOLD
    exact = (pred == target).all(1)
    names = [set_name(ls) for ls in all_label_sets(labels)]
    true_sets = [s["set"] for s in samples]
    pred_sets = [set_name([t for t, p in zip(labels, row) if p]) for row in pred]
    # columns: the label sets, then "other" where a crop was read as more degradations than any set holds
    columns = names + ([OTHER] if any(b not in names for b in pred_sets) else [])
    confusion = {a: {b: 0 for b in columns} for a in names}
    for a, b in zip(true_sets, pred_sets):
        confusion[a][b if b in names else OTHER] += 1
    per_set = {n: float(np.mean(hits)) if (hits := [e for e, t in zip(exact, true_sets) if t == n]) else float("nan")
               for n in names}  # nan: no sample of that set
    per_label = {t: {"acc": float((pred[:, i] == target[:, i]).mean()), "fp": int((pred[:, i] & ~target[:, i]).sum()),
                     "fn": int((~pred[:, i] & target[:, i]).sum())} for i, t in enumerate(labels)}
    return {"n": len(samples), "exact": float(exact.mean()), "per_set": per_set, "per_label": per_label,
            "confusion": confusion}


def report(result: dict, title: str) -> str:
    """The printed table of :func:`scores`."""
    names = list(result["confusion"])
    other = OTHER in next(iter(result["confusion"].values()))  # a column for sets larger than any label set
    width = max(map(len, names)) + 2
    lines = [f"{title}: exact label set {100 * result['exact']:.1f}% of {result['n']}",
             "  per set: " + ", ".join(f"{n} {100 * a:.1f}%" for n, a in result["per_set"].items()),
             "  per label: " + ", ".join(f"{t} {100 * v['acc']:.1f}% ({v['fp']} false +, {v['fn']} false -)"
                                         for t, v in result["per_label"].items()),
             "  confusion (rows: true set; columns: predicted, numbered as the rows"
             + (f", then {OTHER}):" if other else "):"),
             "    " + " " * (width + 3) + "".join(f"{j:>5}" for j in range(1, len(names) + 1))
             + (f"{OTHER:>7}" if other else "")]
    for i, a in enumerate(names, 1):
        row = result["confusion"][a]
        lines.append(f"    {i}. {a:<{width}}" + "".join(f"{row[b]:>5}" for b in names)
                     + (f"{row[OTHER]:>7}" if other else ""))
    return "\n".join(lines)


def evaluate(net: DegradationClassifier, folders: Sequence[Path | str], per_set: int = 75, size: int = 128,
             seed: int = TEST_SEED) -> dict:
    """The scores of ``net`` on ``per_set`` crops per label set from the photos in ``folders``
    (``crops``)."""
    sources = photo_sources(folders, size)
    samples = test_samples(sources, net.labels, seed, per_set, size)
    out = {"photos": len(sources), "size": size, "crops": scores(crop_probabilities(net, samples), samples, net.labels)}
    return out


@dataclasses.dataclass
class ReadSet:
    """Whole images that all show the degradations ``truth`` (empty: clean), read one by one."""

    label: str
    truth: tuple[str, ...]
    names: list[str]
    load: Callable[[int], np.ndarray]  # index -> H x W x 3 uint8 RGB


def _uint8(chw: torch.Tensor) -> np.ndarray:
    return np.clip(np.rint(chw.permute(1, 2, 0).numpy() * 255.0), 0, 255).astype(np.uint8)  # 3xHxW -> HxWx3


def _benchmark_set(label: str, truth: tuple[str, ...], bench: BenchmarkSet) -> ReadSet:
    return ReadSet(label, truth, list(bench.paths), lambda i: _uint8(bench[i]["lq"]))


def _paths_set(label: str, truth: tuple[str, ...], paths: Sequence[Path]) -> ReadSet:
    return ReadSet(label, truth, [p.name for p in paths], lambda i: read_image(paths[i]))


def read_sets(photos: Sequence[Path | str], test_root: Path | str | None, real: Sequence[tuple[str, Path]],
              labels: Sequence[str]) -> list[ReadSet]:
    """The three groups: protocol noise on ``photos``; the real degraded sets of ``test_root`` (its
    tasks among ``labels``) and of ``real``; the clean ``photos``. A UserError for a folder that is
    missing or holds no image."""
    out = []
    check_folders(photos, real)
    if photos:
        noisy, _ = find_test_sets(None, "denoise", crop16=False, denoise_dirs=photos)
        out += [_benchmark_set(f"noise {b.label}", ("denoise",), b) for b in noisy]
    if test_root is not None:
        found, _ = find_test_sets(test_root, "all", crop16=False, report_missing=False)
        out += [_benchmark_set(f"{b.label} ({join_tasks(b.tasks)})", tuple(b.tasks), b) for b in found
                if b.sigma is None and set(b.tasks) <= set(labels)]
    for tasks, folder in real:
        out.append(_paths_set(f"{folder.name} ({tasks})", split_tasks(tasks), list_images(folder)))
    for folder in map(Path, photos):
        out.append(_paths_set(f"clean {folder.name}", (), list_images(folder)))
    return out


def check_folders(photos: Sequence[Path | str], real: Sequence[tuple[str, Path]]) -> None:
    """A one-line UserError for a --photos or --real folder that is missing or holds no image."""
    for folder in map(Path, photos):
        if not folder.is_dir() or not list_images(folder):
            raise UserError(f"--photos {folder}: no such folder of images; pass folders of clean photos")
    for _, folder in real:
        if not folder.is_dir() or not list_images(folder):
            raise UserError(f"--real {folder}: no such folder of images; pass TASKS=DIR with degraded photos")


def read_scores(net: DegradationClassifier, sets: Sequence[ReadSet]) -> list[dict]:
    """Per set: the images, the share read exactly, the confusion row (what each was read as), and the
    images with an unsure reading (and how many of those were read exactly)."""
    out = []
    for rs in sets:
        reads, exact, doubts, doubt_exact = {}, 0, 0, 0
        for i in range(len(rs.names)):
            image = rs.load(i)
            if min(image.shape[:2]) < MIN_SIDE:
                continue
            probs = predict_degradations(net, image, what=rs.names[i])
            got = shown(probs)
            hit = set(got) == set(rs.truth)
            key = join_tasks(got)
            reads[key] = reads.get(key, 0) + 1
            exact += hit
            if unsure(probs):
                doubts, doubt_exact = doubts + 1, doubt_exact + hit
        n = sum(reads.values())
        out.append({"set": rs.label, "truth": join_tasks(rs.truth), "n": n, "exact": exact / n if n else float("nan"),
                    "read_as": reads, "unsure": doubts, "unsure_exact": doubt_exact})
    return out


def read_report(results: Sequence[dict]) -> str:
    """One line per set: exact reading, unsure readings, and what the images were read as."""
    lines = ["whole images (one reading each; unsure: a probability within the unsure band):"]
    for r in results:
        reads = ", ".join(f"{k} {v}" for k, v in sorted(r["read_as"].items(), key=lambda kv: -kv[1]))
        lines.append(f"  {r['set']}: read exactly as {r['truth']} {100 * r['exact']:.1f}% of {r['n']}; "
                     f"unsure {r['unsure']} ({r['unsure_exact']} of them exact); read as: {reads}")
    return "\n".join(lines)


def real_item(text: str) -> tuple[str, Path]:
    """argparse type: 'derain=DIR' or 'derain+dehaze=DIR' -> (task set name, folder)."""
    tasks, sep, folder = text.partition("=")
    try:
        if not sep or not folder:
            raise UserError(f"{text!r}: give TASKS=DIR, e.g. derain=data/rainy")
        return join_tasks(split_tasks(tasks)), Path(folder)
    except UserError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def blind_accuracy_parser() -> ArgumentParser:
    p = ArgumentParser(prog="python -m utils.eval.blind_accuracy", description=__doc__.split("\n\n")[0])
    p.add_argument("--ckpt", required=True, help="a restoration checkpoint or release folder that holds a degradation classifier")
    p.add_argument("--photos", nargs="*", default=[], metavar="DIR",
                   help="folders of clean test photos (read clean, and with the protocol's noise)")
    p.add_argument("--test_root", default=None, help="a test layout whose degraded sets are read (e.g. data/demo/test)")
    p.add_argument("--real", nargs="*", type=real_item, default=[], metavar="TASKS=DIR",
                   help="folders of real degraded photos and what they show, e.g. derain=RainTrainL10/rainy")
    p.add_argument("--crops", action="store_true", help="score generated crops of every label set instead")
    p.add_argument("--per_set", type=int_in(1, 100000), default=75, help="--crops: crops per label set (default 75)")
    p.add_argument("--size", type=int_in(MIN_SIDE, 4096), default=128,
                   help=f"--crops: crop side in pixels, {MIN_SIDE} to 4096")
    p.add_argument("--seed", type=int_in(0, 2**32 - 1), default=TEST_SEED)
    p.add_argument("--json", default=None, help="also write the scores to this JSON file (not one already there)")
    p.add_argument("--threads", type=int_in(1, 256), default=1, help="torch CPU threads, 1 to 256")
    return p


def blind_accuracy_main(argv: Sequence[str] | None) -> int:
    args = blind_accuracy_parser().parse_args(argv)
    if not (args.photos or args.test_root or args.real):
        raise UserError("nothing to read: pass --photos DIR (clean photos), --test_root ROOT or --real TASKS=DIR")
    if args.crops and not args.photos:
        raise UserError("--crops needs --photos: folders of clean photos to cut the crops from")
    check_folders(args.photos, args.real)
    if args.json:
        json_path = Path(args.json)
        if json_path.exists():
            raise UserError(f"--json {json_path}: already there; pass a new file name")
        writable_folder(json_path.parent, "--json", "the scores")
    torch.set_num_threads(args.threads)
    ckpt = load_checkpoint(args.ckpt)
    net = load_classifier(ckpt, args.ckpt)
    if net is None:
        raise UserError(f"{args.ckpt}: this checkpoint has no degradation classifier; add one with "
                        f"`python train.py --stage classifier --resume {args.ckpt}`")
    print(f"{args.ckpt}: classifier {', '.join(net.labels)}")
    if args.crops:
        out = evaluate(net, args.photos, args.per_set, args.size, args.seed)
        print(f"{out['photos']} photos; " + report(out["crops"], f"{out['crops']['n']} crops of {args.size} px"))
    else:
        out = {"whole": read_scores(net, read_sets(args.photos, args.test_root, args.real, net.labels))}
        print(read_report(out["whole"]))
    if args.json:
        tmp = json_path.with_name(json_path.name + ".tmp")
        tmp.write_text(json.dumps(out, indent=1))
        tmp.replace(json_path)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return cli_main(blind_accuracy_main, argv)


if __name__ == "__main__":
    sys.exit(main())
