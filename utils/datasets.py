"""Training and test data in the paper's folder layouts (Sec. 4.1; same layout as PromptIR).

Training (``--data_root``, default ``data/Train``)::

    Denoise/**/*.{jpg,png,...}                        clean images (BSD400 + WED); noise added on the fly
    Derain/rainy/rain-N.png  <->  Derain/gt/norain-N.png          (Rain100L; same names also accepted)
    Dehaze/synthetic/**/ID_A_B.jpg  <->  Dehaze/original/ID.jpg   (RESIDE OTS; .png also accepted)

Test (``test/``)::

    denoise/<set>/*.png                 clean images (CBSD68, Urban100); noise seeded by file name
    derain/<set>/{input,target}/        same names (Rain100L)
    dehaze/{input,target}/              SOTS outdoor: input/0001_0.8_0.2.jpg <-> target/0001.png

Every problem the user can fix raises ``utils.errors.UserError`` with one line naming the folder or
file and the fix.
"""
from __future__ import annotations

import bisect
import re
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from utils.degradations import (
    OTS_A_RANGE,
    OTS_BETA_RANGE,
    add_gaussian_noise,
    depth_proxy,
    synth_haze,
    synth_rain,
    test_noise_seed,
)
from utils.errors import UserError
from utils.image_io import DEFAULT_MAX_PIXELS, IMAGE_EXTENSIONS, image_size, read_image
from utils.metrics import crop_to_multiple, min_test_side
from utils.tasks import DEGRADATIONS, TASKS, sigma_of, task_of

TASK_DIRS = {"denoise": "Denoise", "derain": "Derain", "dehaze": "Dehaze"}

# How often each training image is visited per epoch, as in the official TextPromptIR code
# (utils/dataset_utils.py): the denoising set (BSD400 + WED, 5144 images) once per sigma, x3; the
# 200 Rain100L training pairs x200 (PromptIR used x120); the 72,135 OTS hazy images once.

PAPER_REPEATS = {"denoise_15": 3, "denoise_25": 3, "denoise_50": 3, "derain": 200, "dehaze": 1}

# Tasks whose degraded input TrainDataset can synthesise on the fly from the clean target (--synthesize)
SYNTHETIC_TASKS = ("derain", "dehaze")

# Optional list files in --list_dir, one image per line (blank lines and #comments skipped), given
# relative to the task folder (``rainy/rain-1.png``), to its image folder, or as a bare file name. The
# official data_dir names are accepted too, so the official ``data_dir`` folder can be passed as is.
LIST_FILES = {
    "denoise": ("denoise.txt", "noisy/denoise.txt"),
    "derain": ("derain.txt", "rainy/rainTrain.txt"),
    "dehaze": ("dehaze.txt", "hazy/hazy_outside.txt"),
}

_TRAIN_LAYOUT = {
    "denoise": "clean images anywhere under Denoise/ (e.g. BSD400 and WED)",
    "derain": "Derain/rainy/rain-N.png with Derain/gt/norain-N.png (Rain100L) or the same names",
    "dehaze": "Dehaze/synthetic/<any>/ID_A_B.jpg with Dehaze/original/ID.jpg or ID.png (RESIDE OTS)",
}

EXPECTED_TEST_LAYOUT = (
    "test/denoise/<set>/ (clean images, e.g. CBSD68, Urban100), "
    "test/derain/<set>/{input,target}/ (same names, e.g. Rain100L), "
    "test/dehaze/{input,target}/ (SOTS outdoor: input/0001_0.8_0.2.jpg with target/0001.png)"
)

Pair = tuple[Path | None, Path]  # (degraded input or None for denoise, clean target)


# --- names ------------------------------------------------------------------------------------------


def _natural_key(text: str) -> list:
    """Sort 'rain-2' before 'rain-10'."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", text)]


def _list_images(folder: Path, recursive: bool = True) -> list[Path]:
    files = folder.rglob("*") if recursive else folder.iterdir()
    found = [
        p for p in files
        if p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".") and p.is_file()
    ]
    return sorted(found, key=lambda p: _natural_key(p.relative_to(folder).as_posix()))


def _first_names(paths: Sequence[Path | str], base: Path | None = None) -> str:
    shown = [Path(p).relative_to(base).as_posix() if base else str(p) for p in list(paths)[:5]]
    return ", ".join(shown) + (", ..." if len(paths) > 5 else "")


def _need_dir(folder: Path, what: str) -> None:
    if not folder.is_dir():
        raise UserError(f"{folder}: folder not found; expected {what}")


# --- training pairs ---------------------------------------------------------------------------------


def _pair_by_name(
    inputs: list[Path], in_dir: Path, gt_dir: Path, gt_stem_of, expected: str
) -> list[Pair]:
    """Pair each input with the target whose stem is ``gt_stem_of(input stem)`` (any extension, same
    subfolder, or at the top of ``gt_dir``), or failing that with the same stem."""
    targets: dict[str, Path] = {}
    for p in _list_images(gt_dir):
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
            f"{_first_names(unpaired, in_dir)}; add the missing ground truths or remove these inputs"
        )
    return pairs


def _rain_gt_stem(stem: str) -> str:
    return "norain-" + stem[len("rain-"):] if stem.startswith("rain-") else stem


def _ots_gt_stem(stem: str) -> str:
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
    missing = sorted(wanted - matched, key=_natural_key)
    if missing:
        raise UserError(
            f"{list_path}: {len(missing)} listed image(s) not found under {folder}: "
            f"{_first_names(missing)}; fix the list or add the images"
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
    _need_dir(folder, f"{_TRAIN_LAYOUT[task]} for {de_type} training")
    if task == "denoise":
        image_dir = folder
        images = _list_images(folder)
        if not images:
            raise UserError(
                f"{folder}: no images ({' '.join(IMAGE_EXTENSIONS)}) found; put clean training images there"
            )
        pairs: list[Pair] = [(None, p) for p in images]
    else:
        sub_in, sub_gt = ("rainy", "gt") if task == "derain" else ("synthetic", "original")
        image_dir, gt_dir = folder / sub_in, folder / sub_gt
        for d in (image_dir, gt_dir):
            _need_dir(d, _TRAIN_LAYOUT[task])
        inputs = _list_images(image_dir)
        if not inputs:
            raise UserError(f"{image_dir}: no images found; expected {_TRAIN_LAYOUT[task]}")
        if task == "derain":
            expected = "gt/norain-N.png for rainy/rain-N.png, or the same name"
            pairs = _pair_by_name(inputs, image_dir, gt_dir, _rain_gt_stem, expected)
        else:
            expected = "original/ID.jpg or ID.png for synthetic/ID_A_B.jpg, or the same name"
            pairs = _pair_by_name(inputs, image_dir, gt_dir, _ots_gt_stem, expected)
    if list_dir is not None:
        pairs = _restrict(pairs, list_dir, task, folder, image_dir)
    return pairs


# --- training dataset -------------------------------------------------------------------------------


def _augment(img: np.ndarray, mode: int) -> np.ndarray:
    """One of the 8 flips/rotations of the square (mode 0..7): flip up-down if mode >= 4, then
    rotate by 90 degrees x (mode % 4)."""
    return np.rot90(img[::-1] if mode >= 4 else img, mode % 4)


def _pad_to(img: np.ndarray, size: int) -> np.ndarray:
    """Reflect-pad the bottom/right of an HxWxC image so both sides are at least ``size``."""
    h, w = img.shape[:2]
    if h >= size and w >= size:
        return img
    return np.pad(img, ((0, max(0, size - h)), (0, max(0, size - w)), (0, 0)), mode="reflect")


def _to_tensor(img: np.ndarray) -> torch.Tensor:
    """uint8 HxWx3 -> float32 3xHxW in [0, 1]."""
    chw = np.ascontiguousarray(img.transpose(2, 0, 1), dtype=np.float32)  # 3xHxW
    chw /= np.float32(255.0)
    return torch.from_numpy(chw)


def _size_mismatch(lq: Path, gt: Path, lq_hw, gt_hw) -> UserError:
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
                raise _size_mismatch(lq, gt, lq_hw, sizes[gt])
    return sizes


@dataclass
class _Segment:
    de_type: str
    pairs: list[Pair]
    repeat: int
    start: int  # first global index

    @property
    def length(self) -> int:
        return len(self.pairs) * self.repeat


class TrainDataset(Dataset):
    """All-in-one training set: each sample is a random ``patch_size``² crop of one pair, the same
    crop for input and target, with one of 8 flips/rotations (Sec. 4.1).

    ``de_types`` picks the degradations; ``repeats[de_type]`` (default ``PAPER_REPEATS``) how often
    each image is visited per epoch; ``instruction_rows[task]`` the rows of the instruction table a
    sample may use (one drawn per sample; ``instruction_idx`` = -1 if None). ``task_dirs`` may point a
    task ("denoise", ...) at another folder than ``root/<Task>``. ``synthetic`` names tasks whose
    degraded input is synthesised on the fly from the clean target instead of read from a file, as
    the noise always is: ``derain`` draws a new rain layer (``utils.degradations.synth_rain``, made
    like Rain100L's) for every sample, after the flip/rotation, so streaks stay near vertical;
    ``dehaze`` hazes the crop with the scattering model of RESIDE OTS, A ~ U(0.8, 1) and
    beta ~ U(0.04, 0.2), over the depth proxy of the whole target image. ``channel_shuffle`` also
    permutes the RGB channels of each pair (one of 6 orders, the same for input and target; not in
    the paper): every degradation here treats the channels alike, and a small training set then
    teaches no colour cast.

    ``max_pixels`` bounds the images read (``utils.image_io.check_pixels``; checked with the sizes).

    A key is an index or ``(epoch, index)``. All randomness of a sample (crop, flip, noise, rain,
    instruction) comes from ``np.random.default_rng([seed, epoch, index])``, so a sample does not
    depend on workers, ranks or resuming. Returns ``{"lq", "gt": float32 3xPxP in [0, 1],
    "task": de_type, "instruction_idx": int}``.
    """

    def __init__(
        self,
        root: Path | str,
        de_types: Sequence[str] = DEGRADATIONS,
        patch_size: int = 128,
        repeats: dict[str, int] | None = None,
        instruction_rows: dict[str, list[int]] | None = None,
        list_dir: Path | str | None = None,
        seed: int = 0,
        task_dirs: dict[str, Path | str] | None = None,
        check_sizes: bool = True,
        synthetic: Sequence[str] = (),
        channel_shuffle: bool = False,
        max_pixels: int = DEFAULT_MAX_PIXELS,
    ) -> None:
        if not de_types:
            raise UserError(f"no degradation types given; choose from {', '.join(DEGRADATIONS)}")
        if len(set(de_types)) != len(de_types):
            raise UserError(f"degradation types repeated in {' '.join(de_types)}; give each once")
        self.root = Path(root)
        self.patch_size = int(patch_size)
        self.seed = int(seed)
        self.instruction_rows = instruction_rows
        unknown = set(synthetic) - set(SYNTHETIC_TASKS)
        if unknown:
            raise UserError(f"cannot synthesise {', '.join(sorted(unknown))} on the fly; only {', '.join(SYNTHETIC_TASKS)}")
        self.synthetic = tuple(synthetic)
        self.channel_shuffle = bool(channel_shuffle)
        self.max_pixels = int(max_pixels)
        if list_dir is not None:
            check_list_dir(list_dir, list(dict.fromkeys(task_of(d) for d in de_types)))
        task_dirs = task_dirs or {}
        reps = {**PAPER_REPEATS, **(repeats or {})}
        self.segments: list[_Segment] = []
        by_task: dict[str, list[Pair]] = {}
        start = 0
        for de_type in de_types:
            task = task_of(de_type)
            if task not in by_task:  # the three noise levels share one image list
                by_task[task] = find_train_pairs(self.root, de_type, list_dir, task_dirs.get(task))
                if task in self.synthetic:  # only the clean targets are used, each once
                    by_task[task] = [(None, gt) for gt in dict.fromkeys(gt for _, gt in by_task[task])]
            repeat = int(reps[de_type])
            if repeat < 1:
                raise UserError(f"repeat factor for {de_type} is {repeat}; use 1 or more, or drop {de_type}")
            if instruction_rows is not None and not instruction_rows.get(task):
                raise UserError(
                    f"no instruction rows for task {task}; the instruction bank must cover every task trained"
                )
            self.segments.append(_Segment(de_type, by_task[task], repeat, start))
            start += self.segments[-1].length
        self._starts = [s.start for s in self.segments]
        self._length = start
        self.num_small = 0
        self._decoded: dict[Path, np.ndarray] = {}  # filled by preload()
        self._depths: dict[Path, np.ndarray] = {}  # depth proxies for synthetic haze
        if check_sizes:
            self._check_sizes(by_task)

    def _check_sizes(self, by_task: dict[str, list[Pair]]) -> None:
        """Pairs must match in size; images below the patch size are reported in ONE warning (they
        are reflect-padded)."""
        sizes: dict[Path, tuple[int, int]] = {}
        for pairs in by_task.values():
            check_pair_sizes(pairs, sizes, self.max_pixels)
        self.target_sizes = sizes
        small = [(path, hw) for path, hw in sizes.items() if min(hw) < self.patch_size]
        self.num_small = len(small)
        if small:
            path, (h, w) = min(small, key=lambda s: min(s[1]))
            warnings.warn(
                f"{len(small)} of {len(sizes)} training images are smaller than the {self.patch_size}x"
                f"{self.patch_size} patch and will be reflect-padded (smallest: {path}, {h}x{w})",
                stacklevel=3,
            )

    def preload(self, budget_bytes: int, threads: int = 4) -> tuple[int, int]:
        """Decode images once into memory, up to ``budget_bytes``, most visited first (a derain pair
        is drawn 200 times an epoch, an OTS image once). DataLoader workers forked afterwards share
        these arrays instead of decoding every sample. Returns (images kept, bytes)."""
        visits: dict[Path, int] = {}
        for seg in self.segments:
            for lq, gt in seg.pairs:
                for path in (lq, gt):
                    if path is not None:
                        visits[path] = visits.get(path, 0) + seg.repeat
        sizes = getattr(self, "target_sizes", {})
        chosen, total = [], 0
        for path in sorted(visits, key=lambda p: -visits[p]):
            h, w = sizes.get(path) or image_size(path, self.max_pixels)
            if total + h * w * 3 > budget_bytes:
                break
            chosen.append(path)
            total += h * w * 3
        with ThreadPoolExecutor(max(1, threads)) as pool:  # OpenCV decodes without the GIL
            self._decoded.update(zip(chosen, pool.map(read_image, chosen)))
        return len(chosen), sum(a.nbytes for a in self._decoded.values())

    def _depth(self, path: Path, image: np.ndarray) -> np.ndarray:
        """The depth proxy of a whole (padded) target image, computed once per process."""
        if path not in self._depths:
            self._depths[path] = depth_proxy(image)[..., None]  # HxWx1, so crops augment like images
        return self._depths[path]

    def _read(self, path: Path) -> np.ndarray:
        cached = self._decoded.get(path)
        return cached if cached is not None else read_image(path)

    def __len__(self) -> int:
        return self._length

    def counts(self) -> dict[str, tuple[int, int]]:
        """de_type -> (images, samples per epoch)."""
        return {s.de_type: (len(s.pairs), s.length) for s in self.segments}

    def summary(self) -> str:
        """One line per degradation type, for the training log."""
        return "\n".join(
            f"{s.de_type}: {len(s.pairs)} images x{s.repeat} = {s.length} samples" for s in self.segments
        )

    def _segment(self, index: int) -> _Segment:
        return self.segments[bisect.bisect_right(self._starts, index) - 1]

    def pair(self, index: int) -> Pair:
        """The (input or None, target) files of sample ``index``."""
        seg = self._segment(index)
        return seg.pairs[(index - seg.start) % len(seg.pairs)]

    def __getitem__(self, key: int | tuple[int, int]) -> dict:
        epoch, index = key if isinstance(key, (tuple, list)) else (0, key)
        index = int(index)
        if index < 0:
            index += self._length
        if not 0 <= index < self._length:
            raise IndexError(f"index {index} out of range for {self._length} samples")
        seg = self._segment(index)
        lq_path, gt_path = self.pair(index)
        rng = np.random.default_rng([self.seed, int(epoch), index])

        gt = self._read(gt_path)
        lq = self._read(lq_path) if lq_path is not None else None
        if lq is not None and lq.shape != gt.shape:
            raise _size_mismatch(lq_path, gt_path, lq.shape, gt.shape)
        p = self.patch_size
        full = gt = _pad_to(gt, p)
        h, w = gt.shape[:2]
        top, left = int(rng.integers(0, h - p + 1)), int(rng.integers(0, w - p + 1))
        mode = int(rng.integers(0, 8))
        gt = _augment(gt[top:top + p, left:left + p], mode)  # crop uint8 BEFORE any float conversion
        order = rng.permutation(3) if self.channel_shuffle else None  # drawn only when on: paper runs unchanged
        if order is not None:
            gt = gt[..., order]
        task = task_of(seg.de_type)
        if task == "derain" and task in self.synthetic:
            lq = synth_rain(np.ascontiguousarray(gt), rng)
        elif task == "dehaze" and task in self.synthetic:
            depth = _augment(self._depth(gt_path, full)[top:top + p, left:left + p], mode)[..., 0]
            lq, _ = synth_haze(np.ascontiguousarray(gt), depth, rng, A=OTS_A_RANGE, beta=OTS_BETA_RANGE)
        elif lq is None:
            lq = add_gaussian_noise(np.ascontiguousarray(gt), sigma_of(seg.de_type), rng)
        else:
            lq = _augment(_pad_to(lq, p)[top:top + p, left:left + p], mode)
            if order is not None:
                lq = lq[..., order]
        rows = self.instruction_rows.get(task) if self.instruction_rows is not None else None
        instruction_idx = int(rows[int(rng.integers(0, len(rows)))]) if rows else -1
        return {"lq": _to_tensor(lq), "gt": _to_tensor(gt), "task": seg.de_type, "instruction_idx": instruction_idx}


# --- test sets --------------------------------------------------------------------------------------


class TestSet(Dataset):
    """One benchmark set at one setting (e.g. CBSD68 at sigma=25, Rain100L, SOTS).

    Yields ``{"lq", "gt": float32 3xHxW in [0, 1], "name": file stem, "path": the input's path
    relative to ``image_root``}`` (the set's input or clean-image folder: ``sub1/b.png`` and
    ``sub2/b.png`` are told apart). For denoise sets the input is the target plus noise seeded by
    ``test_noise_seed(file name, sigma)``: identical across runs, listing order and DataLoader
    workers. ``crop16`` centre-crops both to multiples of 16.
    """

    __test__ = False  # not a pytest class

    def __init__(
        self,
        task: str,
        name: str,
        pairs: list[Pair],
        sigma: int | None = None,
        crop16: bool = True,
        folder: Path | None = None,
        noise_seed: int = 0,
        image_root: Path | None = None,
    ) -> None:
        self.task, self.name, self.sigma, self.pairs = task, name, sigma, pairs
        self.crop16, self.folder, self.noise_seed = crop16, folder, noise_seed
        self.label = f"{name} σ={sigma}" if sigma is not None else name
        self.paths = [_relative_name(lq or gt, image_root) for lq, gt in pairs]

    def __len__(self) -> int:
        return len(self.pairs)

    def __repr__(self) -> str:
        return f"TestSet({self.label!r}, {len(self)} images)"

    def __getitem__(self, i: int) -> dict:
        lq_path, gt_path = self.pairs[i]
        gt = read_image(gt_path)
        lq = read_image(lq_path) if lq_path is not None else None
        if lq is not None and lq.shape != gt.shape:
            raise _size_mismatch(lq_path, gt_path, lq.shape, gt.shape)
        if self.crop16:
            gt = crop_to_multiple(gt, 16)
            lq = crop_to_multiple(lq, 16) if lq is not None else None
        if lq is None:  # noise on the (cropped) clean image, seeded by its file name
            rng = np.random.default_rng(test_noise_seed(gt_path.name, self.sigma, self.noise_seed))
            lq = add_gaussian_noise(np.ascontiguousarray(gt), self.sigma, rng)
        name = (lq_path or gt_path).stem
        return {"lq": _to_tensor(lq), "gt": _to_tensor(gt), "name": name, "path": self.paths[i]}


def _relative_name(path: Path, root: Path | None) -> str:
    """``path`` relative to ``root`` as a POSIX string; its file name when it is not below ``root``."""
    try:
        return path.relative_to(root).as_posix() if root is not None else path.name
    except ValueError:
        return path.name


def _check_big_enough(sizes: dict[Path, tuple[int, int]], crop16: bool) -> None:
    """UserError naming the smallest test image if it is too small for the protocol."""
    need = min_test_side(crop16)
    small = [(path, hw) for path, hw in sizes.items() if min(hw) < need]
    if small:
        path, (h, w) = min(small, key=lambda s: min(s[1]))
        more = f" (and {len(small) - 1} more)" if len(small) > 1 else ""
        how = (f"the protocol centre-crops to a multiple of 16, which needs at least {need}x{need}; remove it, "
               "or pass --no_crop16 (then 7x7, SSIM's window, is enough)" if crop16 else
               f"SSIM's {need}x{need} window needs at least {need}x{need}; remove it")
        raise UserError(f"{path} ({w}x{h}){more}: too small to score: {how}")


def _subdirs(parent: Path) -> list[Path]:
    """Visible child folders, in natural order."""
    if not parent.is_dir():
        return []
    return sorted((p for p in parent.iterdir() if p.is_dir() and not p.name.startswith(".")),
                  key=lambda p: _natural_key(p.name))


def _find_dir(parent: Path, name: str) -> Path | None:
    """A child folder by name, case-insensitively."""
    if not parent.is_dir():
        return None
    for p in sorted(parent.iterdir()):
        if p.is_dir() and p.name.lower() == name.lower():
            return p
    return None


def _io_pairs(set_dir: Path, gt_stem_of, notes: list[str]) -> list[Pair]:
    """The (input, target) pairs of a test set's input/ and target/ folders; a target that no
    input pairs with is not scored, and said so in ``notes``."""
    in_dir, gt_dir = _find_dir(set_dir, "input"), _find_dir(set_dir, "target")
    if in_dir is None or gt_dir is None:
        raise UserError(f"{set_dir}: expected input/ and target/ folders with the same image names")
    inputs = _list_images(in_dir)
    if not inputs:
        raise UserError(f"{in_dir}: no images found; put the degraded test images there")
    pairs = _pair_by_name(inputs, in_dir, gt_dir, gt_stem_of, "same name, or target/ID.png for input/ID_A_B.jpg")
    unused = sorted(set(_list_images(gt_dir)) - {gt for _, gt in pairs}, key=lambda p: _natural_key(p.name))
    if unused:
        notes.append(f"warning: {len(unused)} target(s) in {gt_dir} have no input and are not scored: "
                     f"{_first_names(unused, gt_dir)}")
    return pairs


_PAPER_SETS = {"denoise": ("CBSD68", "Urban100"), "derain": ("Rain100L",), "dehaze": ("SOTS",)}
DEMO_MANIFEST = "demo_manifest.json"  # written by utils.demo_data at the root of the demo set
DEMO_SET_NAME = "demo"


def is_demo_root(root: Path | str) -> bool:
    """True for the test folder of the bundled demo set (its sets are not the paper's)."""
    root = Path(root)
    return (root / DEMO_MANIFEST).is_file() or (root.parent / DEMO_MANIFEST).is_file()


def _denoise_sets(task_dir: Path | None, extra_dirs: Sequence[Path | str]) -> list[tuple[str, Path, list[Pair]]]:
    """Each subfolder of ``task_dir`` (and each extra folder) is one set of clean images; images
    directly in ``task_dir`` form one more."""
    sets = []
    for folder in (_subdirs(task_dir) if task_dir else []) + [Path(d) for d in extra_dirs]:
        images = _list_images(folder)
        if not images:
            raise UserError(f"{folder}: no images found; put clean test images there or remove the folder")
        sets.append((folder.name, folder, [(None, p) for p in images]))
    direct = _list_images(task_dir, recursive=False) if task_dir and task_dir.is_dir() else []
    if direct:
        sets.append((task_dir.name, task_dir, [(None, p) for p in direct]))
    return sets


def _paired_sets(task: str, task_dir: Path | None, direct_name: str, notes: list[str]) -> list[tuple[str, Path, list[Pair]]]:
    """``task_dir/{input,target}`` is one set named ``direct_name``; else each subfolder is one."""
    if task_dir is None:
        return []
    gt_stem_of = _ots_gt_stem if task == "dehaze" else _rain_gt_stem
    if _find_dir(task_dir, "input") is not None:
        return [(direct_name, task_dir, _io_pairs(task_dir, gt_stem_of, notes))]
    return [(folder.name, folder, _io_pairs(folder, gt_stem_of, notes)) for folder in _subdirs(task_dir)]


def find_test_sets(
    root: Path | str | None = "test",
    mode: str = "all",
    crop16: bool = True,
    sigmas: Sequence[int] = (15, 25, 50),
    report_missing: bool = True,
    denoise_dirs: Sequence[Path | str] = (),
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> tuple[list[TestSet], list[str]]:
    """The benchmark sets found under ``root`` for ``mode`` ("all", "denoise", "derain", "dehaze"),
    and notes to print: one line per expected set that is missing (e.g. "skipped CBSD68:
    test/denoise/CBSD68 not found", with ``report_missing``) and warnings. Layout: see
    ``EXPECTED_TEST_LAYOUT``; set names match case-insensitively.

    Sets are named by their data: a set laid out directly in ``derain/`` or ``dehaze/`` is
    Rain100L or SOTS, except in the bundled demo set (``is_demo_root``), whose sets are all
    named "demo" and which is checked only for tasks with no set at all.
    ``denoise_dirs``: extra clean-image folders used as denoising sets (named after the folder);
    with ``root=None`` they are the only sets. Every image's header is read: a pair of two sizes, an
    image of more than ``max_pixels`` pixels, or one too small for the protocol (``crop16``) is a
    UserError naming it.
    """
    if mode not in ("all", *TASKS):
        raise UserError(f"unknown test mode {mode!r}; choose from all, {', '.join(TASKS)}")
    root = Path(root) if root is not None else None
    demo = root is not None and is_demo_root(root)
    report_missing = report_missing and root is not None
    found: list[TestSet] = []
    notes: list[str] = []
    for task in TASKS if mode == "all" else (mode,):
        task_dir = (_find_dir(root, task) or root / task) if root is not None else None
        if task == "denoise":
            sets = _denoise_sets(task_dir, denoise_dirs)
        else:
            sets = _paired_sets(task, task_dir, DEMO_SET_NAME if demo else _PAPER_SETS[task][0], notes)
        order = [n.lower() for n in _PAPER_SETS[task]]
        sets.sort(key=lambda s: (order.index(s[0].lower()) if s[0].lower() in order else len(order),
                                 _natural_key(s[0])))  # the paper's sets first
        names = {s[0].lower() for s in sets}
        if report_missing and not demo:
            for name in _PAPER_SETS[task]:
                if name.lower() not in names:
                    where = task_dir / name if task != "dehaze" else task_dir / "{input,target}"
                    notes.append(f"skipped {name}: {where} not found")
        elif report_missing and not sets:
            notes.append(f"skipped {task}: no test sets in {task_dir}")
        for name, folder, pairs in sets:
            _check_big_enough(check_pair_sizes(pairs, max_pixels=max_pixels), crop16)
            sigma_list = [int(s) for s in sigmas] if task == "denoise" else [None]
            image_root = folder if task == "denoise" else _find_dir(folder, "input")
            found += [TestSet(task, name, pairs, sigma=sigma, crop16=crop16, folder=folder, image_root=image_root)
                      for sigma in sigma_list]
    return found, notes


# --- real data at hand (optional) -------------------------------------------------------------------


@dataclass
class DevData:
    """Real images that happen to be next to the repository (``../shared/datasets``, on the
    project's own machines) for a quick dev run: BSD400 (the paper's denoising training images)
    and Kodak24/McMaster as denoising tests."""

    denoise_train: Path
    denoise_test: list[Path] = field(default_factory=list)


def shared_datasets_root() -> Path | None:
    """``<repo>/../shared/datasets`` if it exists, else None. Nothing requires it."""
    path = Path(__file__).resolve().parents[2] / "shared" / "datasets"
    return path if path.is_dir() else None


def dev_data(root: Path | str | None = None) -> DevData | None:
    """The real images next to the repository (default ``shared_datasets_root()``), or None if
    BSD400 is not there: ``train.py --preset dev`` trains on ``denoise_train`` and validates on
    ``denoise_test`` when no --data_root / --val_root is given."""
    base = Path(root) if root is not None else shared_datasets_root()
    if base is None or not (base / "BSD400").is_dir():
        return None
    tests = [base / n for n in ("Kodak24", "McMaster") if (base / n).is_dir()]
    return DevData(base / "BSD400", tests)
