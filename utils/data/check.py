"""``--check_data`` (train.py and test.py): count each known data set against its published size,
one line per set (found, expected, what is wrong), and name the usual mix-ups: SOTS indoor for
outdoor, Rain100H (or a re-released rain set) for Rain100L, grey BSD68 for colour CBSD68, and a set
nested one folder too deep. It reads file names and headers, and decodes a few images at most.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from utils.data.image_io import image_size, read_image
from utils.data.layouts import (
    FLAT_PAIR_DIRS,
    GOPRO_IGNORED,
    TASK_DIRS,
    find_dir,
    list_images,
    mixed_layouts,
    subdirs,
)
from utils.metrics import crop_to_multiple, psnr_ssim
from utils.tasks import PAPER_TASKS, TASKS, task_of

# Published sizes (TextPromptIR Sec. 4.1 trains and tests on PromptIR's data), each with its source.
BSD400_IMAGES = 400  # DnCNN (Zhang et al., TIP 2017, arXiv 1608.03981, Sec. IV-A): 400 BSD images for training
WED_IMAGES = 4744  # Ma et al., "Waterloo Exploration Database", TIP 2017: 4,744 pristine natural images
RAIN100L_TRAIN_PAIRS = 200  # the official list github.com/va1shn9v/PromptIR data_dir/rainy/rainTrain.txt:
#   rain-1 ... rain-200 (200 lines); github.com/csdwren/PReNet issue 21: "Rain100L ... only 200 images"
RAIN_RERELEASE_TRAIN_PAIRS = 1800  # the later JORDER (Yang et al., CVPR 2017) downloads train on 1,800 pairs,
#   light and heavy alike (github.com/flyywh/JORDER-E-Deep-Image-Deraining-TPAMI-2019-Journal issue 3;
#   Rain100H's 1,800: github.com/XiaLiPKU/RESCAN issue 10)
RAIN100L_TEST_PAIRS = 100  # Yang et al., CVPR 2017; the re-released test sets have 200 pairs (same JORDER-E issue)
RAIN100L_INPUT_PSNR = 25.52  # the real Rain100L test set, this protocol: docs/benchmarks/calibration.md#noise-rain-and-haze
HEAVY_RAIN_PSNR = 20.0  # inputs below this mean PSNR are far rainier than Rain100L's: Rain100H-like
OTS_CLEAR_IMAGES = 2061  # RESIDE OTS (Li et al., TIP 2019): each clear image hazed with 5 A x 7 beta = 35 pairs
OTS_HAZY_IMAGES = OTS_CLEAR_IMAGES * 35  # 72,135: the lines of PromptIR's data_dir/hazy/hazy_outside.txt, whose
#   2,431,980 bytes are 2,061 images x 1,180 bytes, the 35 names synthetic/partN/ID_A_B.jpg of one image
CBSD68_IMAGES = 68  # the 68 BSD test images of Roth & Black, in colour (DnCNN Sec. IV-A tests on BSD68 / CBSD68)
URBAN100_IMAGES = 100  # Huang et al., CVPR 2015 (huggingface.co/datasets/Voxel51/Urban100: "100 images")
SOTS_PAIRS = 500  # RESIDE SOTS: 500 outdoor and 500 indoor pairs (github.com/va1shn9v/PromptIR issue 15)
GOPRO_TRAIN_PAIRS = 2103  # GoPro (Nah et al., CVPR 2017): 22 training sequences, 2,103 pairs, and 11 test
GOPRO_TEST_PAIRS = 1111  # sequences, 1,111 pairs (the DeepDeblur release page's "Statistics" table)
LOL_TRAIN_PAIRS = 485  # LOL-v1 (Wei et al., BMVC 2018): 500 pairs, 485 training ("our485") and 15 evaluation
LOL_TEST_PAIRS = 15  # ("eval15"); e.g. NXP eiq-model-zoo tasks/vision/low-light-enhancement/README.md
SOTS_INDOOR_SIZE = (460, 620)  # (h, w): indoor SOTS images are NYU Depth frames cropped to 620x460
#   (github.com/cddlyf/GCANet issue 2); outdoor ones vary in size
PSNR_SAMPLE = 10  # pairs decoded to measure the rain's strength
GREY_SAMPLE = 8  # images decoded to tell grey from colour


@dataclass
class SetCheck:
    """One line of the report: a set, where it was looked for, what was found and what is wrong."""

    name: str
    where: Path
    found: int | None  # None: the folder is not there
    expected: int | None  # None: not a published set (not checked)
    unit: str = "images"
    problem: str | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None and self.found is not None

    def line(self) -> str:
        found = "not found" if self.found is None else f"found {self.found:,} {self.unit}"
        if self.expected is None:
            return f"{self.name} ({self.where}): {found}: not a set of the paper's protocol, not checked"
        status = "ok" if self.ok else (self.problem or "missing: put the set there")
        return f"{self.name} ({self.where}): {found}, expected {self.expected:,}: {status}"


def print_report(checks: list[SetCheck]) -> int:
    """Print one line per set; 0 if every set is as published, 2 otherwise."""
    for check in checks:
        print(check.line())
    return 0 if all(c.ok or c.expected is None for c in checks) else 2


def _nested(folder: Path, markers: Sequence[str]) -> Path | None:
    """The only subfolder of ``folder`` when the expected ``markers`` (e.g. input/, target/) are in it
    rather than in ``folder`` itself: the set was unpacked one folder too deep."""
    if folder is None or not folder.is_dir() or all(find_dir(folder, m) for m in markers):
        return None
    subs = subdirs(folder)
    if len(subs) == 1 and all(find_dir(subs[0], m) for m in markers):
        return subs[0]
    return None


def _too_deep(folder: Path, inner: Path) -> str:
    return f"nested one folder too deep: move the contents of {inner} up into {folder}"


def _count_mismatch(found: int, expected: int, unit: str, folder: Path) -> str | None:
    if found == expected:
        return None
    subs = subdirs(folder)
    where = f" in {len(subs)} subfolders ({', '.join(s.name for s in subs[:4])}{', ...' if len(subs) > 4 else ''})" \
        if subs else ""
    hint = "; keep only the clean images" if subs and found > expected else ""
    return f"{'more' if found > expected else 'fewer'} {unit} than published{where}{hint}"


# --- training sets ----------------------------------------------------------------------------------


def _check_denoise_train(folder: Path) -> list[SetCheck]:
    if not folder.is_dir():
        return [SetCheck("BSD400 + WED", folder, None, BSD400_IMAGES + WED_IMAGES)]
    parts = {"bsd400": ("BSD400", BSD400_IMAGES), "wed": ("WED", WED_IMAGES), "waterlooed": ("WED", WED_IMAGES)}
    named = [(parts[s.name.lower()], s) for s in subdirs(folder) if s.name.lower() in parts]
    if not named:  # one folder of both: only the total can be checked
        n = len(list_images(folder))
        total = BSD400_IMAGES + WED_IMAGES
        problem = None if n == total else (f"{'more' if n > total else 'fewer'} images than BSD400's "
                                           f"{BSD400_IMAGES} and WED's {WED_IMAGES:,} together")
        return [SetCheck("BSD400 + WED", folder, n, total, problem=problem)]
    checks = []
    for (name, expected), sub in named:
        n = len(list_images(sub))
        checks.append(SetCheck(name, sub, n, expected, problem=_count_mismatch(n, expected, "images", sub)))
    for name, expected in {v for v in parts.values()} - {p for p, _ in named}:
        checks.append(SetCheck(name, folder / name, None, expected))
    return sorted(checks, key=lambda c: c.name)


def _check_pairs(folder: Path, names: tuple[str, str], check: SetCheck,
                 judge: Callable[[int, int], str | None]) -> SetCheck:
    """``check`` completed for ``folder``'s two sub-folders ``names``: missing or one level too deep,
    else their image counts as ``judge(first, second)`` finds them."""
    inner = _nested(folder, names)
    if inner is not None:
        n = len(list_images(inner / names[0])) if (inner / names[0]).is_dir() else 0
        return replace(check, found=n, problem=_too_deep(folder, inner))
    first, second = find_dir(folder, names[0]), find_dir(folder, names[1])
    if first is None or second is None:
        return replace(check, problem=None if not folder.is_dir()
                       else f"expected {folder}/{names[0]}/ and {folder}/{names[1]}/")
    n, m = len(list_images(first)), len(list_images(second))
    return replace(check, found=n, problem=judge(n, m))


def _check_derain_train(folder: Path) -> SetCheck:
    def judge(n: int, m: int) -> str | None:
        if n != m:
            return f"{n:,} rainy images but {m:,} clean ones: a pair is missing its other half"
        if n == RAIN_RERELEASE_TRAIN_PAIRS:
            return (f"{n:,} pairs is the later JORDER release's training set (Rain100H's, or the re-released "
                    f"light one), not the {RAIN100L_TRAIN_PAIRS} pairs of Rain100L the paper trains on")
        if n != RAIN100L_TRAIN_PAIRS:
            return _count_mismatch(n, RAIN100L_TRAIN_PAIRS, "pairs", find_dir(folder, "rainy"))
        return None

    return _check_pairs(folder, ("rainy", "gt"), SetCheck("Rain100L train", folder, None, RAIN100L_TRAIN_PAIRS,
                                                          "pairs"), judge)


def _check_dehaze_train(folder: Path) -> SetCheck:
    def judge(n: int, m: int) -> str | None:
        if n != OTS_HAZY_IMAGES or m != OTS_CLEAR_IMAGES:
            return (f"{n:,} hazy images of {m:,} clear ones; OTS as the official lists use it has "
                    f"{OTS_HAZY_IMAGES:,} hazy images of {OTS_CLEAR_IMAGES:,} clear ones (35 each)")
        return None

    return _check_pairs(folder, ("synthetic", "original"), SetCheck("RESIDE OTS", folder, None, OTS_HAZY_IMAGES,
                                                                     "hazy images"), judge)


def _count_pairs(pairs_found: tuple[int, int], expected: int, what: str, folder: Path) -> str | None:
    n, m = pairs_found
    if n != m:
        return f"{n:,} inputs but {m:,} targets: a pair is missing its other half"
    return None if n == expected else _count_mismatch(n, expected, "pairs", folder) + f" ({what})"


def _flat_counts(folder: Path, task: str) -> tuple[int, int] | None:
    for names in FLAT_PAIR_DIRS[task]:
        dirs = [find_dir(folder, n) for n in names]
        if all(dirs):
            return len(list_images(dirs[0])), len(list_images(dirs[1]))
    return None


def _check_paired_train(folder: Path, task: str) -> SetCheck:
    """GoPro (flat, or its <sequence>/{blur,sharp}/ folders, blur_gamma/ not counted) or LOL-v1."""
    name, expected, what = (("GoPro train", GOPRO_TRAIN_PAIRS, "22 sequences") if task == "deblur" else
                            ("LOL-v1 train", LOL_TRAIN_PAIRS, "our485"))
    check = SetCheck(name, folder, None, expected, "pairs")
    if not folder.is_dir():
        return check
    mixed = mixed_layouts(folder, task)
    if mixed is not None:
        return replace(check, found=0, problem=mixed)
    counts = _flat_counts(folder, task)
    if counts is None and task == "deblur":
        per_seq = [_flat_counts(seq, task) for seq in subdirs(folder)]
        if per_seq and all(c is not None for c in per_seq):
            counts = (sum(c[0] for c in per_seq), sum(c[1] for c in per_seq))
    if counts is None:
        inner = subdirs(folder)
        if len(inner) == 1 and _flat_counts(inner[0], task) is not None:
            return replace(check, found=_flat_counts(inner[0], task)[0], problem=_too_deep(folder, inner[0]))
        layout = ", ".join(f"{a}/ + {b}/" for a, b in FLAT_PAIR_DIRS[task])
        seq = f", or <sequence>/blur/ + <sequence>/sharp/ ({GOPRO_IGNORED}/ is not read)" if task == "deblur" else ""
        return replace(check, found=0, problem=f"expected {layout} in {folder}{seq}")
    return replace(check, found=counts[0], problem=_count_pairs(counts, expected, what, folder))


def check_training_data(root: Path | str, de_types: Sequence[str],
                        task_dirs: dict[str, str] | None = None) -> list[SetCheck]:
    """The training sets of ``de_types`` under ``root`` (``task_dirs`` overrides a task's folder, as
    for ``--clean_images``: a folder of the user's own, counted but not checked)."""
    root, task_dirs = Path(root), task_dirs or {}
    checks: list[SetCheck] = []
    for task in dict.fromkeys(task_of(d) for d in de_types):
        if task in task_dirs:
            checks.append(SetCheck("your clean images", Path(task_dirs[task]),
                                   len(list_images(Path(task_dirs[task]))), None))
            continue
        folder = find_dir(root, TASK_DIRS[task]) or root / TASK_DIRS[task]
        if task == "denoise":
            checks += _check_denoise_train(folder)
        elif task == "derain":
            checks.append(_check_derain_train(folder))
        elif task == "dehaze":
            checks.append(_check_dehaze_train(folder))
        else:
            checks.append(_check_paired_train(folder, task))
    return checks


# --- test sets --------------------------------------------------------------------------------------


def _is_grey(path: Path) -> bool:
    rgb = read_image(path).astype(np.int16)
    return bool(np.abs(rgb[..., 0] - rgb[..., 1]).max() <= 1 and np.abs(rgb[..., 1] - rgb[..., 2]).max() <= 1)


def _check_denoise_test(task_dir: Path) -> list[SetCheck]:
    known = {"cbsd68": ("CBSD68", CBSD68_IMAGES), "urban100": ("Urban100", URBAN100_IMAGES)}
    checks, seen = [], set()
    for folder in subdirs(task_dir):
        images = list_images(folder)
        key = folder.name.lower()
        if key == "bsd68":
            checks.append(SetCheck("CBSD68", folder, len(images), CBSD68_IMAGES,
                                   problem="BSD68 is the grey version; the paper's table uses colour CBSD68"))
            seen.add("cbsd68")
            continue
        if key not in known:
            checks.append(SetCheck(folder.name, folder, len(images), None))
            continue
        name, expected = known[key]
        seen.add(key)
        problem = _count_mismatch(len(images), expected, "images", folder)
        if key == "urban100" and len(images) > expected and any("lr" in p.stem.lower() or "srf" in p.stem.lower()
                                                                 for p in images):
            problem = ("a super-resolution download keeps low- and high-resolution versions; keep only the "
                       f"{expected} high-resolution (HR) images")
        if key == "cbsd68" and images and all(_is_grey(p) for p in images[:GREY_SAMPLE]):
            problem = "grey images: this is BSD68, the grey version; the paper's table uses colour CBSD68"
        checks.append(SetCheck(name, folder, len(images), expected, problem=problem))
    for key, (name, expected) in known.items():
        if key not in seen:
            checks.append(SetCheck(name, task_dir / name, None, expected))
    return checks


def _input_psnr(pairs: list[tuple[Path, Path]]) -> float:
    values = []
    for lq, gt in pairs[:PSNR_SAMPLE]:
        a, b = (crop_to_multiple(read_image(p)).astype(np.float64) / 255.0 for p in (lq, gt))
        if a.shape == b.shape and min(a.shape[:2]) >= 7:
            values.append(psnr_ssim(a, b)[0])
    return float(np.mean(values)) if values else float("nan")


def _pairs_by_stem(folder: Path) -> tuple[list[tuple[Path, Path]], int, int]:
    """(input, target) pairs by file stem (as far as they pair), and the input and target counts."""
    inputs, targets = list_images(find_dir(folder, "input")), list_images(find_dir(folder, "target"))
    by_stem = {p.stem: p for p in targets}
    for p in targets:
        by_stem.setdefault(p.stem.replace("norain", "rain"), p)
    pairs = [(p, by_stem[p.stem]) for p in inputs if p.stem in by_stem]
    return pairs, len(inputs), len(targets)


def _derain_sets(task_dir: Path) -> list[tuple[str, Path]]:
    if find_dir(task_dir, "input") is not None:
        return [("Rain100L", task_dir)]
    return [(folder.name, folder) for folder in subdirs(task_dir)]


def _check_derain_test(task_dir: Path) -> list[SetCheck]:
    checks, seen = [], False
    for name, folder in _derain_sets(task_dir):
        key = name.lower()
        if key not in ("rain100l", "rain100h"):
            checks.append(SetCheck(name, folder, len(list_images(folder)), None))
            continue
        seen = True
        inner = _nested(folder, ("input", "target"))
        if inner is not None:
            checks.append(SetCheck("Rain100L", folder, _pairs_by_stem(inner)[1], RAIN100L_TEST_PAIRS, "pairs",
                                   _too_deep(folder, inner)))
            continue
        if find_dir(folder, "input") is None or find_dir(folder, "target") is None:
            checks.append(SetCheck("Rain100L", folder, 0, RAIN100L_TEST_PAIRS, "pairs",
                                   f"expected {folder}/input/ and {folder}/target/"))
            continue
        pairs, n, m = _pairs_by_stem(folder)
        problem = None
        if key == "rain100h":
            problem = "this is Rain100H, heavy rain; the paper's table uses Rain100L"
        elif n != m:
            problem = f"{n} inputs but {m} targets: a pair is missing its other half"
        elif n == 2 * RAIN100L_TEST_PAIRS:
            problem = (f"{n} pairs is the re-released JORDER test set, not the {RAIN100L_TEST_PAIRS}-pair "
                       "Rain100L of the paper's table")
        else:
            psnr = _input_psnr(pairs)
            if psnr < HEAVY_RAIN_PSNR:
                problem = (f"far heavier rain than Rain100L (input PSNR {psnr:.1f} dB over the first "
                           f"{min(len(pairs), PSNR_SAMPLE)} pairs, Rain100L's is {RAIN100L_INPUT_PSNR:.1f}): "
                           "is this Rain100H?")
            elif n != RAIN100L_TEST_PAIRS:
                problem = _count_mismatch(n, RAIN100L_TEST_PAIRS, "pairs", folder)
        checks.append(SetCheck("Rain100L", folder, n, RAIN100L_TEST_PAIRS, "pairs", problem))
    if not seen:
        checks.append(SetCheck("Rain100L", task_dir / "Rain100L", None, RAIN100L_TEST_PAIRS, "pairs"))
    return checks


def _check_sots(name: str, folder: Path) -> SetCheck:
    inner = _nested(folder, ("input", "target"))
    if inner is not None:
        return SetCheck("SOTS outdoor", folder, _pairs_by_stem(inner)[1], SOTS_PAIRS, "pairs", _too_deep(folder, inner))
    if find_dir(folder, "input") is None or find_dir(folder, "target") is None:
        return SetCheck("SOTS outdoor", folder, 0, SOTS_PAIRS, "pairs", f"expected {folder}/input/ and {folder}/target/")
    _, n, m = _pairs_by_stem(folder)
    sizes = Counter(image_size(p) for p in list_images(find_dir(folder, "input")))
    indoor = sizes[SOTS_INDOOR_SIZE] >= 0.9 * max(n, 1)
    problem = None
    if indoor or "indoor" in name.lower():
        problem = ("these look like SOTS indoor (620x460 NYU Depth frames; outdoor images vary in size); the "
                   "paper's table uses SOTS outdoor")
    elif n != SOTS_PAIRS:
        problem = _count_mismatch(n, SOTS_PAIRS, "hazy inputs", folder)
    elif m != SOTS_PAIRS:
        problem = f"{m} targets for {n} inputs; SOTS outdoor has one clear target per hazy input"
    return SetCheck("SOTS outdoor", folder, n, SOTS_PAIRS, "pairs", problem)


def _check_dehaze_test(task_dir: Path) -> list[SetCheck]:
    if find_dir(task_dir, "input") is not None:
        return [_check_sots("SOTS", task_dir)]
    subs = subdirs(task_dir)
    if not subs:
        return [SetCheck("SOTS outdoor", task_dir, None, SOTS_PAIRS, "pairs")]
    return [_check_sots(folder.name, folder) for folder in subs]


def _check_paired_test(task_dir: Path, task: str) -> list[SetCheck]:
    """GoPro test (``deblur/GoPro/{input,target}``) or LOL-v1 eval15 (``lowlight/LOL/{input,target}``,
    or ``low/`` + ``high/``); other sets are counted, not checked."""
    name, expected = ("GoPro", GOPRO_TEST_PAIRS) if task == "deblur" else ("LOL", LOL_TEST_PAIRS)
    flat = _flat_counts(task_dir, task) if task_dir.is_dir() else None
    sets = [(name, task_dir)] if flat is not None else [(d.name, d) for d in subdirs(task_dir)]
    checks, seen = [], False
    for set_name, folder in sets:
        if set_name.lower() != name.lower():
            checks.append(SetCheck(set_name, folder, len(list_images(folder)), None))
            continue
        seen = True
        counts = _flat_counts(folder, task)
        if counts is None:
            inner = _nested(folder, ("input", "target"))
            problem = _too_deep(folder, inner) if inner is not None else f"expected {folder}/input/ and {folder}/target/"
            checks.append(SetCheck(name, folder, 0, expected, "pairs", problem))
            continue
        checks.append(SetCheck(name, folder, counts[0], expected, "pairs",
                               _count_pairs(counts, expected, "test pairs", folder)))
    if not seen:
        checks.append(SetCheck(name, task_dir / name, None, expected, "pairs"))
    return checks


def check_test_data(root: Path | str, mode: str = "all") -> list[SetCheck]:
    """The benchmark sets under ``root`` (``test/`` layout) for ``mode`` ("all" or one task). "all"
    checks the paper's three tasks, and deblur / lowlight when their folders are there."""
    root = Path(root)
    checks: list[SetCheck] = []
    for task in TASKS if mode == "all" else (mode,):
        task_dir = find_dir(root, task) or root / task
        if mode == "all" and task not in PAPER_TASKS and not task_dir.is_dir():
            continue
        if task in ("deblur", "lowlight"):
            checks += _check_paired_test(task_dir, task)
        elif task == "denoise":
            checks += _check_denoise_test(task_dir) if task_dir.is_dir() else [
                SetCheck("CBSD68", task_dir / "CBSD68", None, CBSD68_IMAGES),
                SetCheck("Urban100", task_dir / "Urban100", None, URBAN100_IMAGES)]
        elif task == "derain":
            checks += _check_derain_test(task_dir) if task_dir.is_dir() else [
                SetCheck("Rain100L", task_dir / "Rain100L", None, RAIN100L_TEST_PAIRS, "pairs")]
        else:
            checks += _check_dehaze_test(task_dir) if task_dir.is_dir() else [
                SetCheck("SOTS outdoor", task_dir, None, SOTS_PAIRS, "pairs")]
    return checks
