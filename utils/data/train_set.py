"""The all-in-one training set (Sec. 4.1): random crops of every task's pairs, with the 8
flips/rotations, noise (and, with ``--synthesize``, rain and haze) drawn on the fly per sample."""



import bisect
import warnings
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from utils.data.degradations import (
    add_gaussian_noise,
    depth_proxy,
    synth_haze,
    synth_rain,
)
from utils.data.image_io import DEFAULT_MAX_PIXELS, image_size, read_image, to_tensor
from utils.data.layouts import (
    PAPER_REPEATS,
    Pair,
    check_list_dir,
    check_pair_sizes,
    find_train_pairs,
    size_mismatch,
)
from utils.errors import UserError
from utils.tasks import DEGRADATIONS, SYNTHETIC_TASKS, TASKS, sigma_of, task_of

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
    the noise always is: ``derain`` draws a new rain layer (``utils.data.degradations.synth_rain``, made
    like Rain100L's) for every sample, after the flip/rotation, so streaks stay near vertical;
    ``dehaze`` hazes the crop with the scattering model of RESIDE OTS, A and beta drawn
    uniformly over OTS's ranges, over the depth proxy of the whole target image. ``channel_shuffle`` also
    permutes the RGB channels of each pair (one of 6 orders, the same for input and target; not in
    the paper): every degradation here treats the channels alike, and a small training set then
    teaches no colour cast. ``identity_share`` (one share, or {task: share}) makes that share of a
    task's samples identity pairs (not in the paper): the input is the clean target itself, with the
    task and instruction of the segment, so that each task's pass learns to leave a photo without its
    degradation as it is.

    ``max_pixels`` bounds the images read (``utils.data.image_io.check_pixels``; checked with the sizes).

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
        identity_share: float | Mapping[str, float] = 0.0,
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
        shares = identity_share if isinstance(identity_share, Mapping) else dict.fromkeys(TASKS, identity_share)
        for task, share in shares.items():
            if not 0.0 <= share < 1.0:
                raise UserError(f"identity share {share} of {task} must be from 0 to below 1")
        self.identity_shares = {task: float(share) for task, share in shares.items() if share}
        self.max_pixels = int(max_pixels)
        if list_dir is not None:
            check_list_dir(list_dir, list(dict.fromkeys(task_of(d) for d in de_types)))
        by_task = self._build_segments(de_types, {**PAPER_REPEATS, **(repeats or {})}, list_dir, task_dirs or {})
        self.num_small = 0
        self._decoded: dict[Path, np.ndarray] = {}  # filled by preload()
        self._depths: dict[Path, np.ndarray] = {}  # depth proxies for synthetic haze
        if check_sizes:
            self._check_sizes(by_task)

    def _build_segments(self, de_types: Sequence[str], reps: dict[str, int], list_dir: Path | str | None,
                        task_dirs: dict[str, Path | str]) -> dict[str, list[Pair]]:
        """One segment per degradation type, in order, each its task's pairs times its repeat factor;
        returns the pairs of each task."""
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
            if self.instruction_rows is not None and not self.instruction_rows.get(task):
                raise UserError(
                    f"no instruction rows for task {task}; the instruction bank must cover every task trained"
                )
            self.segments.append(_Segment(de_type, by_task[task], repeat, start))
            start += self.segments[-1].length
        self._starts = [s.start for s in self.segments]
        self._length = start
        return by_task

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
            raise size_mismatch(lq_path, gt_path, lq.shape, gt.shape)
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
            lq, _ = synth_haze(np.ascontiguousarray(gt), depth, rng)
        elif lq is None:
            lq = add_gaussian_noise(np.ascontiguousarray(gt), sigma_of(seg.de_type), rng)
        else:
            lq = _augment(_pad_to(lq, p)[top:top + p, left:left + p], mode)
            if order is not None:
                lq = lq[..., order]
        rows = self.instruction_rows.get(task) if self.instruction_rows is not None else None
        instruction_idx = int(rows[int(rng.integers(0, len(rows)))]) if rows else -1
        share = self.identity_shares.get(task, 0.0)
        if share and rng.random() < share:  # drawn last: other draws unchanged
            lq = gt
        return {"lq": to_tensor(lq), "gt": to_tensor(gt), "task": seg.de_type, "instruction_idx": instruction_idx}


