"""Where the data is: the paper's folder layouts (Sec. 4.1; the same as PromptIR's), how inputs are
paired with their targets, and the optional list files.

Training (``--data_root``, default ``data/Train``)::

    Denoise/**/*.{jpg,png,...}                        clean images (BSD400 + WED); noise added on the fly
    Derain/rainy/rain-N.png  <->  Derain/gt/norain-N.png          (Rain100L; same names also accepted)
    Dehaze/synthetic/**/ID_A_B.jpg  <->  Dehaze/original/ID.jpg   (RESIDE OTS; .png also accepted)
    Deblur/<sequence>/blur/N.png  <->  Deblur/<sequence>/sharp/N.png  (GoPro as shipped; blur_gamma/ ignored)
    Lowlight/low/N.png  <->  Lowlight/high/N.png                  (LOL-v1's our485)
    Deblur/ and Lowlight/ also take flat input/ + target/ (or blur/ + sharp/, low/ + high/), same names

Test (``test/``; the sets themselves: ``utils.eval.benchmarks``)::

    denoise/<set>/*.png                 clean images (CBSD68, Urban100); noise seeded by file name
    derain/<set>/{input,target}/        same names (Rain100L)
    dehaze/{input,target}/              SOTS outdoor: input/0001_0.8_0.2.jpg <-> target/0001.png
    deblur/<set>/{input,target}/        same names (GoPro test)
    lowlight/<set>/{input,target}/      same names (LOL-v1 eval15; low/ + high/ also accepted)

Every problem the user can fix raises ``utils.errors.UserError`` with one line naming the folder or
file and the fix.
"""



import re
from collections.abc import Sequence
from pathlib import Path

from utils.data.image_io import DEFAULT_MAX_PIXELS, IMAGE_EXTENSIONS, image_size
from utils.errors import UserError
from utils.tasks import task_of

TASK_DIRS = {"denoise": "Denoise", "derain": "Derain", "dehaze": "Dehaze", "deblur": "Deblur", "lowlight": "Lowlight"}

# How often each training image is visited per epoch, as in the official TextPromptIR code
# (utils/dataset_utils.py): the denoising set (BSD400 + WED, 5144 images) once per sigma, x3; the
# 200 Rain100L training pairs x200 (PromptIR used x120); the 72,135 OTS hazy images once.

PAPER_REPEATS = {"denoise_15": 3, "denoise_25": 3, "denoise_50": 3, "derain": 200, "dehaze": 1,
                 # the five-task setting's, as AdaIR, MoCE-IR and BaryIR all repeat them: GoPro's 2,103 pairs x5,
                 # LOL-v1's 485 x20 (AdaIR utils/dataset_utils.py, MoCE-IR src/data/dataset_utils.py,
                 # BaryIR util/dataset_utils.py)
                 "deblur": 5, "lowlight": 20}


# Optional list files in --list_dir, one image per line (blank lines and #comments skipped), given
# relative to the task folder (``rainy/rain-1.png``), to its image folder, or as a bare file name. The
# official data_dir names are accepted too, so the official ``data_dir`` folder can be passed as is.
LIST_FILES = {
    "denoise": ("denoise.txt", "noisy/denoise.txt"),
    "derain": ("derain.txt", "rainy/rainTrain.txt"),
    "dehaze": ("dehaze.txt", "hazy/hazy_outside.txt"),
    "deblur": ("deblur.txt",),
    "lowlight": ("lowlight.txt",),
}

_TRAIN_LAYOUT = {
    "denoise": "clean images anywhere under Denoise/ (e.g. BSD400 and WED)",
    "derain": "Derain/rainy/rain-N.png with Derain/gt/norain-N.png (Rain100L) or the same names",
    "dehaze": "Dehaze/synthetic/<any>/ID_A_B.jpg with Dehaze/original/ID.jpg or ID.png (RESIDE OTS)",
    "deblur": "Deblur/<sequence>/blur/*.png with Deblur/<sequence>/sharp/*.png (GoPro as shipped), or "
              "Deblur/input/ with Deblur/target/ (same names)",
    "lowlight": "Lowlight/low/*.png with Lowlight/high/*.png (LOL-v1), or Lowlight/input/ with Lowlight/target/ "
                "(same names)",
}

# The (input, target) folder names a flat paired training set may use, per task, in order of preference
FLAT_PAIR_DIRS = {
    "deblur": (("input", "target"), ("blur", "sharp")),
    "lowlight": (("input", "target"), ("low", "high")),
}
GOPRO_IGNORED = "blur_gamma"  # GoPro's gamma-averaged blur; the benchmark's input is blur/ (MPRNet onwards)

EXPECTED_TEST_LAYOUT = (
    "test/denoise/<set>/ (clean images, e.g. CBSD68, Urban100), "
    "test/derain/<set>/{input,target}/ (same names, e.g. Rain100L), "
    "test/dehaze/{input,target}/ (SOTS outdoor: input/0001_0.8_0.2.jpg with target/0001.png), "
    "and for five tasks test/deblur/GoPro/{input,target}/ and test/lowlight/LOL/{input,target}/ (same names)"
)

DEMO_MANIFEST = "demo_manifest.json"  # written by utils.data.demo_data at the root of the demo set
DEMO_SET_NAME = "demo"

Pair = tuple[Path | None, Path]  # (degraded input or None for denoise, clean target)


# --- names ------------------------------------------------------------------------------------------


def natural_key(text: str) -> list:
    """Sort 'rain-2' before 'rain-10'."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", text)]


def list_images(folder: Path, recursive: bool = True) -> list[Path]:
    files = folder.rglob("*") if recursive else folder.iterdir()
    found = [
        p for p in files
        if p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".") and p.is_file()
    ]
    return sorted(found, key=lambda p: natural_key(p.relative_to(folder).as_posix()))


def first_names(paths: Sequence[Path | str], base: Path | None = None) -> str:
    shown = [Path(p).relative_to(base).as_posix() if base else str(p) for p in list(paths)[:5]]
    return ", ".join(shown) + (", ..." if len(paths) > 5 else "")


def need_dir(folder: Path, what: str) -> None:
    if not folder.is_dir():
        raise UserError(f"{folder}: folder not found; expected {what}")


# --- training pairs ---------------------------------------------------------------------------------


def pair_by_name(
    inputs: list[Path], in_dir: Path, gt_dir: Path, gt_stem_of, expected: str
) -> list[Pair]:
    """Pair each input with the target whose stem is ``gt_stem_of(input stem)`` (any extension, same
    subfolder, or at the top of ``gt_dir``), or failing that with the same stem."""
    targets: dict[str, Path] = {}
    for p in list_images(gt_dir):
        targets.setdefault(p.relative_to(gt_dir).with_suffix("").as_posix(), p)
        targets.setdefault(p.stem, p)
    pairs, unpaired = [], []
    for p in inputs:
        sub = p.parent.relative_to(in_dir).as_posix()
        sub = "" if sub == "." else sub + "/"
        stem = gt_stem_of(p.stem)
        gt = None
        for key in (sub + stem, stem, sub + p.stem, p.stem):
            if key in targets:
                gt = targets[key]
                break
        if gt is None:
            unpaired.append(p)
        else:
            pairs.append((p, gt))
    if unpaired:
        raise UserError(
            f"{in_dir}: {len(unpaired)} image(s) have no ground truth in {gt_dir} ({expected}): "
            f"{first_names(unpaired, in_dir)}; add the missing ground truths or remove these inputs"
        )
    return pairs


def rain_gt_stem(stem: str) -> str:
    return "norain-" + stem[len("rain-"):] if stem.startswith("rain-") else stem


def ots_gt_stem(stem: str) -> str:
    return stem.split("_")[0]


def _read_list(list_dir: Path, task: str) -> tuple[Path, list[str]] | None:
    for name in LIST_FILES[task]:
        path = Path(list_dir) / name
        if path.is_file():
            try:
                lines = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines()]
            except UnicodeDecodeError as e:
                raise UserError(f"{path}: not UTF-8 text (byte {e.start}); save the list as UTF-8") from None
            except OSError as e:
                raise UserError(f"{path}: cannot read the list ({e.strerror or e})") from None
            return path, [ln for ln in lines if ln and not ln.startswith("#")]
    return None


def check_list_dir(list_dir: Path | str, tasks: Sequence[str]) -> None:
    """``--list_dir`` must be a folder holding a list file for at least one of ``tasks``: otherwise
    it would silently restrict nothing."""
    folder = Path(list_dir)
    if not folder.is_dir():
        raise UserError(f"{folder}: no such folder of list files; fix --list_dir or drop it")
    if not any((folder / name).is_file() for task in tasks for name in LIST_FILES[task]):
        names = ", ".join(name for task in tasks for name in LIST_FILES[task])
        raise UserError(f"{folder}: no list file for {', '.join(tasks)} here (expected one of {names}); "
                        "fix --list_dir or drop it")


def _restrict(pairs: list[Pair], list_dir: Path | str, task: str, folder: Path, image_dir: Path) -> list[Pair]:
    """Keep the pairs named in the task's list file (if there is one); every listed name must exist."""
    found = _read_list(Path(list_dir), task)
    if found is None:
        return pairs
    list_path, entries = found
    wanted = {e.replace("\\", "/").removeprefix("./") for e in entries}
    keep, matched = [], set()
    for pair in pairs:
        image = pair[0] if pair[0] is not None else pair[1]
        keys = {image.relative_to(folder).as_posix(), image.relative_to(image_dir).as_posix(), image.name}
        hit = keys & wanted
        if hit:
            keep.append(pair)
            matched |= hit
    missing = sorted(wanted - matched, key=natural_key)
    if missing:
        raise UserError(
            f"{list_path}: {len(missing)} listed image(s) not found under {folder}: "
            f"{first_names(missing)}; fix the list or add the images"
        )
    if not keep:
        raise UserError(f"{list_path}: the list is empty; list the images to train on, one per line")
    return keep


def find_train_pairs(
    root: Path | str, de_type: str, list_dir: Path | str | None = None, task_dir: Path | str | None = None
) -> list[Pair]:
    """The training pairs ``(input, target)`` of one degradation type; ``input`` is None for denoise
    (noise is synthesised). ``task_dir`` replaces ``root/<Denoise|Derain|Dehaze>`` if given.
    ``list_dir`` holds optional list files (see ``LIST_FILES``) that restrict the images."""
    task = task_of(de_type)
    folder = Path(task_dir) if task_dir is not None else Path(root) / TASK_DIRS[task]
    need_dir(folder, f"{_TRAIN_LAYOUT[task]} for {de_type} training")
    if task == "denoise":
        image_dir = folder
        images = list_images(folder)
        if not images:
            raise UserError(
                f"{folder}: no images ({' '.join(IMAGE_EXTENSIONS)}) found; put clean training images there"
            )
        pairs: list[Pair] = [(None, p) for p in images]
    elif task in FLAT_PAIR_DIRS:
        image_dir, pairs = _paired_train_pairs(folder, task)
    else:
        sub_in, sub_gt = ("rainy", "gt") if task == "derain" else ("synthetic", "original")
        image_dir, gt_dir = folder / sub_in, folder / sub_gt
        for d in (image_dir, gt_dir):
            need_dir(d, _TRAIN_LAYOUT[task])
        inputs = list_images(image_dir)
        if not inputs:
            raise UserError(f"{image_dir}: no images found; expected {_TRAIN_LAYOUT[task]}")
        if task == "derain":
            expected = "gt/norain-N.png for rainy/rain-N.png, or the same name"
            pairs = pair_by_name(inputs, image_dir, gt_dir, rain_gt_stem, expected)
        else:
            expected = "original/ID.jpg or ID.png for synthetic/ID_A_B.jpg, or the same name"
            pairs = pair_by_name(inputs, image_dir, gt_dir, ots_gt_stem, expected)
    if list_dir is not None:
        pairs = _restrict(pairs, list_dir, task, folder, image_dir)
    return pairs




def _same_name(stem: str) -> str:
    return stem


def _all_flat_dirs(folder: Path, task: str) -> list[tuple[Path, Path]]:
    """Every (input, target) folder pair of ``FLAT_PAIR_DIRS[task]`` present in ``folder``."""
    found = [(find_dir(folder, a), find_dir(folder, b)) for a, b in FLAT_PAIR_DIRS[task]]
    return [(a, b) for a, b in found if a is not None and b is not None]


def _flat_dirs(folder: Path, task: str) -> tuple[Path, Path] | None:
    """The first (input, target) folder pair of ``FLAT_PAIR_DIRS[task]`` present in ``folder``."""
    found = _all_flat_dirs(folder, task)
    return found[0] if found else None


def mixed_layouts(folder: Path, task: str) -> str | None:
    """What is wrong with a deblur or lowlight training folder that holds two layouts (flat
    ``input/`` + ``target/`` beside ``low/`` + ``high/``, or beside GoPro sequences): reading one
    would drop the other's pairs unsaid. None for one layout or none."""
    layouts = [f"{a.name}/ + {b.name}/" for a, b in _all_flat_dirs(folder, task)]
    sequences = [d for d in subdirs(folder) if _flat_dirs(d, task) is not None] if task == "deblur" else []
    if sequences:
        layouts.append(f"GoPro sequences ({sequences[0].name}/blur/ + sharp/"
                       f"{f' and {len(sequences) - 1} more' if len(sequences) > 1 else ''})")
    if len(layouts) < 2:
        return None
    return (f"holds {' and '.join(layouts)}, two layouts of which only one would be read; keep one "
            "(move the other's pairs into it, or elsewhere)")


def _pairs_in(in_dir: Path, gt_dir: Path, task: str) -> list[Pair]:
    inputs = list_images(in_dir)
    if not inputs:
        raise UserError(f"{in_dir}: no images found; expected {_TRAIN_LAYOUT[task]}")
    return pair_by_name(inputs, in_dir, gt_dir, _same_name, "the same file name")


def _paired_train_pairs(folder: Path, task: str) -> tuple[Path, list[Pair]]:
    """The pairs of a deblur or lowlight training folder, and the folder its list file is relative to:
    flat ``input/`` + ``target/`` (or ``blur/`` + ``sharp/``, ``low/`` + ``high/``) in ``folder``, else
    (deblur) GoPro's ``<sequence>/blur/`` + ``<sequence>/sharp/`` in every subfolder, whose
    ``blur_gamma/`` folders are ignored with one note. Two of these layouts in one folder are refused."""
    mixed = mixed_layouts(folder, task)
    if mixed is not None:
        raise UserError(f"{folder}: {mixed}")
    flat = _flat_dirs(folder, task)
    if flat is not None:
        return flat[0], _pairs_in(flat[0], flat[1], task)
    sequences = [d for d in subdirs(folder) if _flat_dirs(d, task) is not None]
    if task != "deblur" or not sequences:
        raise UserError(f"{folder}: no paired folders found; expected {_TRAIN_LAYOUT[task]}")
    other = [d for d in subdirs(folder) if d not in sequences]
    if other:
        raise UserError(f"{other[0]}: a GoPro sequence folder without blur/ and sharp/ (found "
                        f"{len(sequences)} complete ones); add them or remove the folder")
    pairs: list[Pair] = []
    for seq in sequences:
        in_dir, gt_dir = _flat_dirs(seq, task)
        pairs += _pairs_in(in_dir, gt_dir, task)
    gamma = [seq for seq in sequences if find_dir(seq, GOPRO_IGNORED) is not None]
    if gamma:
        print(f"note: {folder}: ignoring the {GOPRO_IGNORED}/ folders of {len(gamma)} GoPro sequences; the "
              "benchmark's input is blur/ (as MPRNet, AdaIR and MoCE-IR train)")
    return folder, pairs


def size_mismatch(lq: Path, gt: Path, lq_hw, gt_hw) -> UserError:
    return UserError(
        f"{lq} ({lq_hw[0]}x{lq_hw[1]}) and {gt} ({gt_hw[0]}x{gt_hw[1]}): a pair must have the same size; "
        "replace or remove one of them"
    )


def check_pair_sizes(pairs: Sequence[Pair], sizes: dict[Path, tuple[int, int]] | None = None,
                     max_pixels: int = DEFAULT_MAX_PIXELS) -> dict[Path, tuple[int, int]]:
    """Read every image's (height, width) from its header (about 0.3 ms a file; EXIF rotation
    applied) and raise a UserError naming both files for the first pair whose sizes differ, or
    naming an image of more than ``max_pixels`` pixels. Returns the sizes of the targets
    (``sizes`` is filled in and reused: OTS targets are shared)."""
    sizes = {} if sizes is None else sizes
    for lq, gt in pairs:
        if gt not in sizes:
            sizes[gt] = image_size(gt, max_pixels)
        if lq is not None:
            lq_hw = image_size(lq, max_pixels)
            if lq_hw != sizes[gt]:
                raise size_mismatch(lq, gt, lq_hw, sizes[gt])
    return sizes




def subdirs(parent: Path) -> list[Path]:
    """Visible child folders, in natural order."""
    if not parent.is_dir():
        return []
    return sorted((p for p in parent.iterdir() if p.is_dir() and not p.name.startswith(".")),
                  key=lambda p: natural_key(p.name))


def find_dir(parent: Path, name: str) -> Path | None:
    """A child folder by name, case-insensitively."""
    if not parent.is_dir():
        return None
    for p in sorted(parent.iterdir()):
        if p.is_dir() and p.name.lower() == name.lower():
            return p
    return None


def io_pairs(set_dir: Path, gt_stem_of, notes: list[str], names: tuple[str, str] = ("input", "target")) -> list[Pair]:
    """The (input, target) pairs of a test set's input/ and target/ folders (or ``names``, as
    LOL's low/ and high/, when input/ is not there); a target that no input pairs with is not
    scored, and said so in ``notes``."""
    in_dir, gt_dir = find_dir(set_dir, "input"), find_dir(set_dir, "target")
    if in_dir is None and gt_dir is None and names != ("input", "target"):
        in_dir, gt_dir = find_dir(set_dir, names[0]), find_dir(set_dir, names[1])
        if in_dir is None or gt_dir is None:
            raise UserError(f"{set_dir}: expected input/ and target/ (or {names[0]}/ and {names[1]}/) folders "
                            "with the same image names")
    if in_dir is None or gt_dir is None:
        raise UserError(f"{set_dir}: expected input/ and target/ folders with the same image names")
    inputs = list_images(in_dir)
    if not inputs:
        raise UserError(f"{in_dir}: no images found; put the degraded test images there")
    pairs = pair_by_name(inputs, in_dir, gt_dir, gt_stem_of, "same name, or target/ID.png for input/ID_A_B.jpg")
    unused = sorted(set(list_images(gt_dir)) - {gt for _, gt in pairs}, key=lambda p: natural_key(p.name))
    if unused:
        notes.append(f"warning: {len(unused)} target(s) in {gt_dir} have no input and are not scored: "
                     f"{first_names(unused, gt_dir)}")
    return pairs


