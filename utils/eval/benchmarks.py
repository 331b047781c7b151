"""The benchmark sets of the paper's protocol (Sec. 4.2, Table 1): CBSD68 / Urban100 at three
noise levels, Rain100L, SOTS outdoor; the five-task setting's GoPro and LOL-v1; and the bundled
demo set, found under a test-layout root."""



from collections.abc import Sequence
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from utils.data.degradations import (
    add_gaussian_noise,
    benchmark_noise_seed,
)
from utils.data.image_io import DEFAULT_MAX_PIXELS, read_image, to_tensor
from utils.data.layouts import (
    DEMO_MANIFEST,
    DEMO_SET_NAME,
    Pair,
    check_pair_sizes,
    find_dir,
    io_pairs,
    list_images,
    natural_key,
    ots_gt_stem,
    rain_gt_stem,
    size_mismatch,
    subdirs,
)
from utils.errors import UserError
from utils.metrics import crop_to_multiple, min_test_side
from utils.tasks import COMPOSITE, PAPER_TASKS, TASKS, join_tasks, split_tasks

# --- test sets --------------------------------------------------------------------------------------


class BenchmarkSet(Dataset):
    """One benchmark set at one setting (e.g. CBSD68 at sigma=25, Rain100L, SOTS).

    Yields ``{"lq", "gt": float32 3xHxW in [0, 1], "name": file stem, "path": the input's path
    relative to ``image_root``}`` (the set's input or clean-image folder: ``sub1/b.png`` and
    ``sub2/b.png`` are told apart). For denoise sets the input is the target plus noise seeded by
    ``benchmark_noise_seed(file name, sigma)``: identical across runs, listing order and DataLoader
    workers. ``crop16`` centre-crops both to multiples of 16.
    """


    def __init__(
        self,
        task: str,
        name: str,
        pairs: list[Pair],
        sigma: int | None = None,
        crop16: bool = True,
        noise_seed: int = 0,
        image_root: Path | None = None,
        tasks: tuple[str, ...] | None = None,
    ) -> None:
        self.task, self.name, self.sigma, self.pairs = task, name, sigma, pairs
        self.tasks = tasks or (task,)  # what the input shows: one task, or a composite's several
        self.crop16, self.noise_seed = crop16, noise_seed
        self.label = f"{name} σ={sigma}" if sigma is not None else name
        self.paths = [_relative_name(lq or gt, image_root) for lq, gt in pairs]

    def __len__(self) -> int:
        return len(self.pairs)

    def __repr__(self) -> str:
        return f"BenchmarkSet({self.label!r}, {len(self)} images)"

    def __getitem__(self, i: int) -> dict:
        lq_path, gt_path = self.pairs[i]
        gt = read_image(gt_path)
        lq = read_image(lq_path) if lq_path is not None else None
        if lq is not None and lq.shape != gt.shape:
            raise size_mismatch(lq_path, gt_path, lq.shape, gt.shape)
        if self.crop16:
            gt = crop_to_multiple(gt, 16)
            lq = crop_to_multiple(lq, 16) if lq is not None else None
        if lq is None:  # noise on the (cropped) clean image, seeded by its file name
            rng = np.random.default_rng(benchmark_noise_seed(gt_path.name, self.sigma, self.noise_seed))
            lq = add_gaussian_noise(np.ascontiguousarray(gt), self.sigma, rng)
        name = (lq_path or gt_path).stem
        return {"lq": to_tensor(lq), "gt": to_tensor(gt), "name": name, "path": self.paths[i]}


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




PAPER_SETS = {"denoise": ("CBSD68", "Urban100"), "derain": ("Rain100L",), "dehaze": ("SOTS",),
              "deblur": ("GoPro",), "lowlight": ("LOL",)}


def is_demo_root(root: Path | str) -> bool:
    """True for the test folder of the bundled demo set (its sets are not the paper's)."""
    root = Path(root)
    return (root / DEMO_MANIFEST).is_file() or (root.parent / DEMO_MANIFEST).is_file()


def _denoise_sets(task_dir: Path | None, extra_dirs: Sequence[Path | str]) -> list[tuple[str, Path, list[Pair]]]:
    """Each subfolder of ``task_dir`` (and each extra folder) is one set of clean images; images
    directly in ``task_dir`` form one more."""
    sets = []
    for folder in (subdirs(task_dir) if task_dir else []) + [Path(d) for d in extra_dirs]:
        images = list_images(folder)
        if not images:
            raise UserError(f"{folder}: no images found; put clean test images there or remove the folder")
        sets.append((folder.name, folder, [(None, p) for p in images]))
    direct = list_images(task_dir, recursive=False) if task_dir and task_dir.is_dir() else []
    if direct:
        sets.append((task_dir.name, task_dir, [(None, p) for p in direct]))
    return sets


def _paired_sets(task: str, task_dir: Path | None, direct_name: str, notes: list[str]) -> list[tuple[str, Path, list[Pair]]]:
    """``task_dir/{input,target}`` is one set named ``direct_name``; else each subfolder is one."""
    if task_dir is None:
        return []
    gt_stem_of = ots_gt_stem if task == "dehaze" else rain_gt_stem
    names = ("low", "high") if task == "lowlight" else ("input", "target")  # LOL's eval15 ships low/ + high/
    if find_dir(task_dir, "input") is not None or find_dir(task_dir, names[0]) is not None:
        return [(direct_name, task_dir, io_pairs(task_dir, gt_stem_of, notes, names))]
    return [(folder.name, folder, io_pairs(folder, gt_stem_of, notes, names)) for folder in subdirs(task_dir)]


def find_test_sets(
    root: Path | str | None = "test",
    mode: str = "all",
    crop16: bool = True,
    sigmas: Sequence[int] = (15, 25, 50),
    report_missing: bool = True,
    denoise_dirs: Sequence[Path | str] = (),
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> tuple[list[BenchmarkSet], list[str]]:
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
    if mode not in ("all", *TASKS, COMPOSITE):
        raise UserError(f"unknown test mode {mode!r}; choose from all, {', '.join(TASKS)}, {COMPOSITE}")
    root = Path(root) if root is not None else None
    demo = root is not None and is_demo_root(root)
    report_missing = report_missing and root is not None
    found: list[BenchmarkSet] = []
    notes: list[str] = []
    for task in TASKS if mode == "all" else () if mode == COMPOSITE else (mode,):
        task_dir = (find_dir(root, task) or root / task) if root is not None else None
        if mode == "all" and task not in PAPER_TASKS and (task_dir is None or not task_dir.is_dir()):
            continue  # a five-task set is looked for (and missed) only when its task folder is there
        if task == "denoise":
            sets = _denoise_sets(task_dir, denoise_dirs)
        else:
            sets = _paired_sets(task, task_dir, DEMO_SET_NAME if demo else PAPER_SETS[task][0], notes)
        order = [n.lower() for n in PAPER_SETS[task]]
        sets.sort(key=lambda s: (order.index(s[0].lower()) if s[0].lower() in order else len(order),
                                 natural_key(s[0])))  # the paper's sets first
        names = {s[0].lower() for s in sets}
        if report_missing and not demo:
            for name in PAPER_SETS[task]:
                if name.lower() not in names:
                    where = task_dir / name if task != "dehaze" else task_dir / "{input,target}"
                    notes.append(f"skipped {name}: {where} not found")
        elif report_missing and not sets:
            notes.append(f"skipped {task}: no test sets in {task_dir}")
        for name, folder, pairs in sets:
            _check_big_enough(check_pair_sizes(pairs, max_pixels=max_pixels), crop16)
            sigma_list = [int(s) for s in sigmas] if task == "denoise" else [None]
            image_root = folder if task == "denoise" else (find_dir(folder, "input") or find_dir(folder, "low"))
            found += [BenchmarkSet(task, name, pairs, sigma=sigma, crop16=crop16, image_root=image_root)
                      for sigma in sigma_list]
    if root is not None and mode in ("all", COMPOSITE):
        found += _composite_sets(root, crop16, max_pixels, notes)
    return found, notes


def _composite_sets(root: Path, crop16: bool, max_pixels: int, notes: list[str]) -> list[BenchmarkSet]:
    """Each ``composite/<tasks>/{input,target}`` folder under ``root`` (``<tasks>`` such as
    ``denoise+derain``) as one set whose input shows all of its tasks' degradations."""
    folder = find_dir(root, COMPOSITE)
    sets = []
    for set_dir in subdirs(folder) if folder is not None else []:
        try:
            tasks = split_tasks(set_dir.name)
        except UserError as e:
            raise UserError(f"{set_dir}: name a composite set by its tasks joined with '+', e.g. "
                            f"denoise+derain ({e})") from None
        pairs = io_pairs(set_dir, lambda stem: stem, notes)
        _check_big_enough(check_pair_sizes(pairs, max_pixels=max_pixels), crop16)
        sets.append(BenchmarkSet(COMPOSITE, f"{COMPOSITE} {join_tasks(tasks)}", pairs, crop16=crop16,
                                 image_root=find_dir(set_dir, "input"), tasks=tasks))
    return sets


