"""How well the degradation classifier of a checkpoint reads images: exact-label-set accuracy on
generated test crops (and, with ``--whole``, on whole degraded photos).

    python -m utils.eval.blind_accuracy --ckpt ckpt/demo/last.pt --photos DIR [DIR ...]

The photos are CLEAN images the classifier was not trained on (e.g. Kodak24, McMaster, the demo
set's test targets); exact duplicates are dropped. Every label set (clean, each task alone and every
composite of up to three) gets the same number of crops of ``--size`` pixels at native resolution,
degraded in the physical order (``utils.tasks.PHYSICAL_ORDER``) by the project's synthesisers, with
the noise levels of the paper (sigma 15, 25, 50, balanced), OTS's haze ranges and the demo set's
calibrated blur and darkness, from generators seeded apart from training. Printed: the count, the
exact-set accuracy overall and per set, the per-label accuracy with its false positives and
negatives, and the set confusion matrix.
"""
from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from net.degradation_classifier import THRESHOLD, DegradationClassifier, predict_degradations
from utils.checkpoint import load_checkpoint, load_classifier
from utils.cli import ArgumentParser, cli_main
from utils.data.classifier_samples import (
    TEST_RANGES,
    Source,
    all_label_sets,
    degrade,
    load_clean,
    set_name,
    test_samples,
)
from utils.data.layouts import list_images
from utils.errors import UserError

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


def whole_photo_samples(sources: Sequence[Source], labels: Sequence[str], seed: int) -> list[dict]:
    """Every photo degraded whole in every label set (haze over its whole depth proxy)."""
    out = []
    for si, present in enumerate(all_label_sets(labels)):
        for k, src in enumerate(sources):
            rng = np.random.default_rng([seed, 100 + si, k])
            sigma = TEST_RANGES.sigmas[(k + si) % len(TEST_RANGES.sigmas)]
            img, _ = degrade(src.image, src.depth, present, rng, dataclasses.replace(TEST_RANGES, sigmas=(sigma,)))
            out.append({"image": img, "target": np.array([t in present for t in labels], bool),
                        "set": set_name(present), "source": src.name})
    return out


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
             seed: int = TEST_SEED, whole: bool = False) -> dict:
    """The scores of ``net`` on ``per_set`` crops per label set from the photos in ``folders``
    (``crops``) and, with ``whole``, on every photo degraded whole in every set (``whole``)."""
    sources = photo_sources(folders, size)
    samples = test_samples(sources, net.labels, seed, per_set, size)
    out = {"photos": len(sources), "size": size, "crops": scores(crop_probabilities(net, samples), samples, net.labels)}
    if whole:
        photos = whole_photo_samples(sources, net.labels, seed)
        prob = np.array([[predict_degradations(net, s["image"])[t] for t in net.labels] for s in photos])
        out["whole"] = scores(prob, photos, net.labels)
    return out


def blind_accuracy_main(argv: Sequence[str] | None) -> int:
    p = ArgumentParser(prog="python -m utils.eval.blind_accuracy", description=__doc__.split("\n\n")[0])
    p.add_argument("--ckpt", required=True, help="a restoration checkpoint or release folder that holds a degradation "
                                                      "classifier")
    p.add_argument("--photos", nargs="+", required=True, metavar="DIR", help="folders of clean test photos")
    p.add_argument("--per_set", type=int, default=75, help="crops per label set (default 75: 600 for 8 sets)")
    p.add_argument("--size", type=int, default=128, help="crop side in pixels")
    p.add_argument("--seed", type=int, default=TEST_SEED)
    p.add_argument("--whole", action="store_true", help="also score every photo degraded whole (<=16 crops each)")
    p.add_argument("--json", default=None, help="also write the scores to this JSON file")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    ckpt = load_checkpoint(args.ckpt)
    net = load_classifier(ckpt, args.ckpt)
    if net is None:
        raise UserError(f"{args.ckpt}: this checkpoint has no degradation classifier; add one with "
                        f"`python train.py --stage classifier --resume {args.ckpt}`")
    out = evaluate(net, args.photos, args.per_set, args.size, args.seed, args.whole)
    print(f"{args.ckpt}: classifier {', '.join(net.labels)}; {out['photos']} photos")
    print(report(out["crops"], f"{out['crops']['n']} crops of {args.size} px"))
    if "whole" in out:
        print(report(out["whole"], f"{out['whole']['n']} whole photos"))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return cli_main(blind_accuracy_main, argv)


if __name__ == "__main__":
    sys.exit(main())
