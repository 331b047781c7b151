"""Build the bundled demo set from the photos that ship with scikit-image (no download).

    python -m utils.data.demo_data --out data/demo [--seed 0] [--small] [--force] [--sheet docs/demo_pairs.png]
    python -m utils.data.demo_data --out data/demo_five --five_task     # + motion blur and low light

It writes the paper's layouts (see ``utils/data/layouts.py``), so demo and benchmarks share one code path::

    <out>/Train/Denoise/<photo>_NN.png                                  clean tiles (noise added on the fly)
    <out>/Train/Derain/rainy/rain-N.png, gt/norain-N.png                synthetic rain (Rain100L-like)
    <out>/Train/Dehaze/synthetic/part1/ID_A_B.jpg, original/ID.jpg      synthetic haze (OTS-like)
    <out>/test/denoise/demo/*.png                                       clean; noise added at test time
    <out>/test/derain/demo/{input,target}/*.png
    <out>/test/dehaze/{input,target}/   input/0001_0.8_0.2.jpg with target/0001.png (SOTS naming)
    <out>/test/composite/<tasks>/{input,target}/*.png                  two or three degradations at once,
                                                                        e.g. composite/denoise+derain

With ``--five_task`` (``build_demo(five_task=True)``) it also writes the five-task setting's tasks, made
with ``utils.data.degradations`` (calibrated to GoPro and LOL-v1); without it the output is byte for byte
what it was before the five-task tasks existed::

    <out>/Train/Deblur/GOPR_<photo>/{blur,sharp}/NNNNNN.png            camera-shake blur, GoPro's layout
    <out>/Train/Lowlight/{low,high}/N.png                               short exposure + sensor noise, LOL's
    <out>/test/deblur/demo/{input,target}/*.png, test/lowlight/demo/{input,target}/*.png

Split by photo: the test set uses only ``coffee`` and the ``stereo_motorcycle`` pair (its real disparity
gives the test haze its depth); training uses the other photos. Rain and haze come from
``utils.data.degradations`` (calibrated to Rain100L and SOTS); noise follows the paper's protocol.

Deterministic: the same seed gives the same bytes (each image has its own generator seeded by
(seed, task, item); PNG/JPEG are written by OpenCV without timestamps). A ``demo_manifest.json`` lists
the files; a rerun with the same seed and size returns at once if they are all present (``--force``
rebuilds). Rebuilding removes only files listed in a previous manifest, never anything else.
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np
from skimage import data as skdata

from utils.data.degradations import (
    OTS_A,
    OTS_BETA,
    add_gaussian_noise,
    benchmark_noise_seed,
    depth_from_disparity,
    depth_proxy,
    input_quality,
    rain_statistics,
    synth_haze,
    synth_low_light,
    synth_motion_blur,
    synth_rain,
)
from utils.data.layouts import DEMO_MANIFEST
from utils.errors import UserError
from utils.tasks import join_tasks

MANIFEST = DEMO_MANIFEST
VERSION = 2  # bump when the output of a given seed changes
FIVE_TASK_VERSION = 2  # ... and this when only the five-task sets' output changes (blur, low light)

TEST_PHOTOS = ("coffee", "motorcycle_left", "motorcycle_right")
# Training photos and the tasks each one serves (space, microscopy and texture photos would make
# odd haze; grey photos are used as RGB).
TRAIN_PHOTOS = {
    "astronaut": ("denoise", "derain", "dehaze"),
    "chelsea": ("denoise", "derain", "dehaze"),
    "rocket": ("denoise", "derain", "dehaze"),
    "camera": ("denoise", "derain", "dehaze"),
    "hubble_deep_field": ("denoise", "derain"),
    "immunohistochemistry": ("denoise", "derain"),
    "retina": ("denoise",),
    "brick": ("denoise", "derain"),
    "grass": ("denoise", "derain"),
    "gravel": ("denoise",),
    "coins": ("denoise", "derain"),
}
SMALL_TRAIN = ("astronaut", "camera")
# Training photos of the five-task setting's deblur and lowlight sets (photos of scenes a camera shakes on or
# shoots in the dark; the test photos stay out)
FIVE_TASK_TRAIN_PHOTOS = ("astronaut", "chelsea", "rocket", "camera", "immunohistochemistry", "brick", "coins")


def load_photo_rgb(name: str) -> np.ndarray:
    """A scikit-image sample photo as uint8 HxWx3 RGB (bundled with the package: no network)."""
    if name in ("motorcycle_left", "motorcycle_right"):
        left, right, _ = skdata.stereo_motorcycle()
        img = left if name == "motorcycle_left" else right
    else:
        img = getattr(skdata, name)()
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    return np.ascontiguousarray(img[..., :3].astype(np.uint8))


def _resize_short(img: np.ndarray, short: int) -> np.ndarray:
    h, w = img.shape[:2]
    scale = short / min(h, w)
    if scale >= 1.0:
        return img
    return cv2.resize(img, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)


def _resize_long(img: np.ndarray, long: int) -> np.ndarray:
    h, w = img.shape[:2]
    scale = long / max(h, w)
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    return cv2.resize(img, (round(w * scale), round(h * scale)), interpolation=interp)


def _tiles(img: np.ndarray, size: int, stride: int) -> list[tuple[int, int]]:
    """Top-left corners of size x size tiles on a grid (the last row/column flush with the edge)."""
    h, w = img.shape[:2]
    ys = sorted(set(list(range(0, max(h - size, 0) + 1, stride)) + [max(h - size, 0)]))
    xs = sorted(set(list(range(0, max(w - size, 0) + 1, stride)) + [max(w - size, 0)]))
    return [(y, x) for y in ys for x in xs]


def _informative(tile: np.ndarray) -> bool:
    """Skip nearly flat tiles (e.g. the black border of the retina photo)."""
    return float(tile.std()) > 12.0 and float((tile.max(axis=2) < 16).mean()) < 0.5


def _write(path: Path, rgb: np.ndarray, files: list[Path]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    params = [cv2.IMWRITE_JPEG_QUALITY, 95] if path.suffix == ".jpg" else [cv2.IMWRITE_PNG_COMPRESSION, 6]
    ok, buf = cv2.imencode(path.suffix, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), params)
    assert ok, path
    buf.tofile(str(path))
    files.append(path)


def _decoded_jpeg(rgb: np.ndarray) -> np.ndarray:
    """What an image looks like after the JPEG round trip (so haze is made from the stored original)."""
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
    return cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def _ots_name(image_id: str, a: float, beta: float) -> str:
    return f"{image_id}_{a:g}_{beta:g}.jpg"  # e.g. 0025_0.8_0.04.jpg, 0025_1_0.2.jpg as in OTS


@dataclasses.dataclass
class BuildSettings:
    tile: int = 192  # training tile side
    stride: int = 128
    train_short: int = 384  # training photos are first shrunk to this shorter side
    haze_short: int = 256  # ... and to this one for haze (more scene per tile: depth cues)
    rain_variants: int = 2  # rain layers per training tile
    haze_variants: int = 6  # (A, beta) draws per training tile
    blur_variants: int = 3  # camera-shake kernels per training tile (five-task set)
    lowlight_variants: int = 3  # exposures per training tile (five-task set)


def _train_tiles(names, settings: BuildSettings, short: int, task: str, small: bool):
    """(photo, index, tile, full resized photo, (y, x)) for the photos that serve ``task``."""
    out = []
    for name in names:
        if task not in TRAIN_PHOTOS[name]:
            continue
        photo = _resize_short(load_photo_rgb(name), short)
        corners = _tiles(photo, settings.tile, settings.stride)
        if small:
            corners = corners[:2]
        k = 0
        for y, x in corners:
            tile = photo[y:y + settings.tile, x:x + settings.tile]
            if _informative(tile):
                out.append((name, k, tile, photo, (y, x)))
                k += 1
    return out


def _rng(seed: int, task: int, item: int) -> np.random.Generator:
    return np.random.default_rng([seed, task, item])


def _write_train_denoise(train: Path, names, s: BuildSettings, small: bool, files: list[Path]) -> None:
    """Clean tiles; the noise is added on the fly by the training set."""
    for name, k, tile, _, _ in _train_tiles(names, s, s.train_short, "denoise", small):
        _write(train / "Denoise" / f"{name}_{k:02d}.png", tile, files)


def _write_train_derain(train: Path, names, s: BuildSettings, small: bool, seed: int, files: list[Path]) -> None:
    """rain-N / norain-N pairs, several rain layers per tile."""
    n = 0
    for _, _, tile, _, _ in _train_tiles(names, s, s.train_short, "derain", small):
        for _ in range(s.rain_variants):
            n += 1
            _write(train / "Derain" / "rainy" / f"rain-{n}.png", synth_rain(tile, _rng(seed, 1, n)), files)
            _write(train / "Derain" / "gt" / f"norain-{n}.png", tile, files)


def _write_train_dehaze(train: Path, names, s: BuildSettings, small: bool, seed: int, files: list[Path]) -> None:
    """OTS naming; the depth proxy is computed on the whole photo, then tiled."""
    item = 0
    for i, (_, _, tile, photo, (y, x)) in enumerate(_train_tiles(names, s, s.haze_short, "dehaze", small)):
        image_id = f"{i + 1:04d}"
        clean = _decoded_jpeg(tile)
        _write(train / "Dehaze" / "original" / f"{image_id}.jpg", tile, files)
        depth = depth_proxy(photo)[y:y + s.tile, x:x + s.tile]
        used = set()
        for _ in range(s.haze_variants):
            item += 1
            r = _rng(seed, 2, item)
            a, beta = float(r.choice(OTS_A)), float(r.choice(OTS_BETA))
            if (a, beta) in used:  # one file per (A, beta), as in OTS
                continue
            used.add((a, beta))
            hazy, _ = synth_haze(clean, depth, r, A=a, beta=beta)
            _write(train / "Dehaze" / "synthetic" / "part1" / _ots_name(image_id, a, beta), hazy, files)


def _write_test_noise_and_rain(test: Path, small: bool, seed: int, files: list[Path]) -> None:
    """Whole photos shrunk to 256 px on the long side, plus 256x256 full-resolution crops."""
    coffee, moto_r = load_photo_rgb("coffee"), load_photo_rgb("motorcycle_right")

    def whole_and_crops(coffee_crop: tuple[slice, slice], moto_crop: tuple[slice, slice]) -> dict[str, np.ndarray]:
        return {"coffee_whole": _resize_long(coffee, 256), "coffee_crop": coffee[coffee_crop],
                "motorcycle_whole": _resize_long(moto_r, 256), "motorcycle_crop": moto_r[moto_crop]}

    denoise_set = whole_and_crops(np.s_[144:400, 0:256], np.s_[100:356, 300:556])
    derain_set = whole_and_crops(np.s_[0:256, 344:600], np.s_[244:500, 0:256])
    if small:
        denoise_set = dict(list(denoise_set.items())[:1])
        derain_set = dict(list(derain_set.items())[:1])
    for name, img in denoise_set.items():
        _write(test / "denoise" / "demo" / f"{name}.png", img, files)
    for k, (name, img) in enumerate(derain_set.items()):
        _write(test / "derain" / "demo" / "input" / f"{name}.png", synth_rain(img, _rng(seed, 3, k)), files)
        _write(test / "derain" / "demo" / "target" / f"{name}.png", img, files)


def _write_test_haze(test: Path, small: bool, seed: int, files: list[Path]) -> None:
    """The motorcycle with its real stereo depth, at two (A, beta) each; coffee with the proxy."""
    coffee, moto_l = load_photo_rgb("coffee"), load_photo_rgb("motorcycle_left")
    _, _, disparity = skdata.stereo_motorcycle()
    moto_depth = depth_from_disparity(disparity)
    moto_small = _resize_long(moto_l, 256)
    moto_small_depth = cv2.resize(moto_depth, moto_small.shape[1::-1], interpolation=cv2.INTER_AREA)
    haze_set = [
        ("0001", moto_small, moto_small_depth, ((0.8, 0.2), (0.95, 0.08))),
        ("0002", moto_l[100:356, 300:556], moto_depth[100:356, 300:556], ((0.9, 0.12),)),
        ("0003", _resize_long(coffee, 256), depth_proxy(_resize_long(coffee, 256)), ((1.0, 0.16), (0.85, 0.06))),
    ]
    if small:
        haze_set = haze_set[:1]
    for k, (image_id, img, depth, settings_ab) in enumerate(haze_set):
        _write(test / "dehaze" / "target" / f"{image_id}.png", img, files)
        for j, (a, beta) in enumerate(settings_ab):
            hazy, _ = synth_haze(img, depth, _rng(seed, 4, 10 * k + j), A=a, beta=beta)
            _write(test / "dehaze" / "input" / _ots_name(image_id, a, beta), hazy, files)


# The composite test sets: every pair of the three degradations, and all three.
COMPOSITE_SETS = (("denoise", "derain"), ("denoise", "dehaze"), ("derain", "dehaze"), ("denoise", "derain", "dehaze"))
COMPOSITE_SIGMA = 25  # the middle of the paper's noise levels
COMPOSITE_HAZE = (0.9, 0.12)  # (A, beta): the middle of OTS's grid


def _write_test_composites(test: Path, small: bool, seed: int, files: list[Path]) -> None:
    """The test photos with several degradations, applied in the order they arise: haze (in the
    air), rain (in front of it), then the sensor's noise. Noise is stored in the input here, so a
    composite set reads like a real photo with all its degradations."""
    coffee, moto_l = load_photo_rgb("coffee"), load_photo_rgb("motorcycle_left")
    _, _, disparity = skdata.stereo_motorcycle()
    moto_depth = depth_from_disparity(disparity)
    coffee_small = _resize_long(coffee, 256)
    moto_small = _resize_long(moto_l, 256)
    photos = [
        ("coffee_whole", coffee_small, depth_proxy(coffee_small)),
        ("motorcycle_whole", moto_small,
         cv2.resize(moto_depth, moto_small.shape[1::-1], interpolation=cv2.INTER_AREA)),
        ("motorcycle_crop", moto_l[100:356, 300:556], moto_depth[100:356, 300:556]),
    ]
    for i, tasks in enumerate(COMPOSITE_SETS[:1] if small else COMPOSITE_SETS):
        folder = test / "composite" / join_tasks(tasks)
        for k, (name, img, depth) in enumerate(photos[:1] if small else photos):
            rng = _rng(seed, 10 + i, k)
            out = img
            if "dehaze" in tasks:
                out, _ = synth_haze(out, depth, rng, A=COMPOSITE_HAZE[0], beta=COMPOSITE_HAZE[1])
            if "derain" in tasks:
                out = synth_rain(out, rng)
            if "denoise" in tasks:
                out = add_gaussian_noise(out, COMPOSITE_SIGMA, rng)
            _write(folder / "input" / f"{name}.png", out, files)
            _write(folder / "target" / f"{name}.png", img, files)
def _write_train_five_task(train: Path, names, s: BuildSettings, small: bool, seed: int, files: list[Path]) -> None:
    """GoPro-layout blur pairs (one "sequence" per photo) and LOL-layout low-light pairs."""
    n_blur, n_low = {}, 0
    for name, _, tile, _, _ in _train_tiles(names, s, s.train_short, "denoise", small):
        seq = train / "Deblur" / f"GOPR_{name}"
        for _ in range(s.blur_variants):
            k = n_blur[name] = n_blur.get(name, 0) + 1
            item = 1000 * names.index(name) + k
            _write(seq / "blur" / f"{k:06d}.png", synth_motion_blur(tile, _rng(seed, 5, item)), files)
            _write(seq / "sharp" / f"{k:06d}.png", tile, files)
        for _ in range(s.lowlight_variants):
            n_low += 1
            _write(train / "Lowlight" / "low" / f"{n_low}.png", synth_low_light(tile, _rng(seed, 6, n_low)), files)
            _write(train / "Lowlight" / "high" / f"{n_low}.png", tile, files)


def _write_test_five_task(test: Path, small: bool, seed: int, files: list[Path]) -> None:
    """Whole test photos shrunk to 256 px on the long side and 256x256 full-resolution crops (other
    regions than the denoise and derain sets'), blurred and darkened."""
    coffee, moto_r = load_photo_rgb("coffee"), load_photo_rgb("motorcycle_right")
    whole = {"coffee_whole": _resize_long(coffee, 256), "motorcycle_whole": _resize_long(moto_r, 256)}
    sets = {"deblur": {**whole, "coffee_crop": coffee[100:356, 200:456], "motorcycle_crop": moto_r[0:256, 400:656]},
            "lowlight": {**whole, "coffee_crop": coffee[200:456, 344:600], "motorcycle_crop": moto_r[244:500, 600:856]}}
    synth = {"deblur": (7, synth_motion_blur), "lowlight": (8, synth_low_light)}
    for task, images in sets.items():
        stream, degrade = synth[task]
        for k, (name, img) in enumerate(list(images.items())[:1] if small else images.items()):
            _write(test / task / "demo" / "input" / f"{name}.png", degrade(img, _rng(seed, stream, k)), files)
            _write(test / task / "demo" / "target" / f"{name}.png", img, files)


def build_demo(
    out: Path | str, seed: int = 0, small: bool = False, settings: BuildSettings | None = None,
    five_task: bool = False,
) -> list[Path]:
    """Write the demo set under ``out`` and return the files written (see the module docstring).
    ``small`` builds a reduced set (2 training photos, a few tiles) for fast tests; ``five_task``
    adds the deblur and lowlight sets (the three-task files are the same either way)."""
    out = Path(out)
    s = settings or BuildSettings()
    if small:
        s = dataclasses.replace(s, rain_variants=1, haze_variants=1)
    names = SMALL_TRAIN if small else tuple(TRAIN_PHOTOS)
    assert not set(names) & set(TEST_PHOTOS)  # no photo in both train and test
    files: list[Path] = []
    _write_train_denoise(out / "Train", names, s, small, files)
    _write_train_derain(out / "Train", names, s, small, seed, files)
    _write_train_dehaze(out / "Train", names, s, small, seed, files)
    _write_test_noise_and_rain(out / "test", small, seed, files)
    _write_test_haze(out / "test", small, seed, files)
    _write_test_composites(out / "test", small, seed, files)
    if five_task:
        five_names = SMALL_TRAIN if small else FIVE_TASK_TRAIN_PHOTOS
        assert not set(five_names) & set(TEST_PHOTOS)
        _write_train_five_task(out / "Train", five_names, s, small, seed, files)
        _write_test_five_task(out / "test", small, seed, files)
    return files


# --- manifest / idempotence -------------------------------------------------------------------------


def _manifest_key(seed: int, small: bool, five_task: bool = False) -> dict:
    key = {"generator": "utils.data.demo_data", "version": VERSION, "seed": seed, "small": small}
    # the three-task manifest as it always was
    return {**key, "five_task": True, "five_task_version": FIVE_TASK_VERSION} if five_task else key


def _read_manifest(out: Path) -> dict | None:
    try:
        manifest = json.loads((out / MANIFEST).read_text())
        return manifest if manifest.get("generator") == "utils.data.demo_data" else None
    except (OSError, ValueError):
        return None


def _up_to_date(out: Path, manifest: dict | None, seed: int, small: bool, five_task: bool = False) -> bool:
    key = _manifest_key(seed, small, five_task)
    if manifest is None or any(manifest.get(k) != v for k, v in key.items()) or \
            bool(manifest.get("five_task")) != five_task:
        return False
    return all((out / rel).is_file() and (out / rel).stat().st_size == size for rel, size in manifest["files"].items())


def _remove_previous(out: Path, manifest: dict) -> None:
    """Delete the files a previous build listed (only those), then the folders left empty."""
    for rel in manifest.get("files", {}):
        (out / rel).unlink(missing_ok=True)
    for folder in sorted({p for rel in manifest.get("files", {}) for p in (out / rel).parents if out in p.parents},
                         key=lambda p: len(p.parts), reverse=True):
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()


def make_demo(out: Path | str, seed: int = 0, small: bool = False, force: bool = False,
              five_task: bool = False) -> tuple[bool, list[Path]]:
    """Build the demo set (with ``five_task``, also its deblur and lowlight sets) unless an identical
    one is there. Returns (built, files)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: exists and is a file; --out must be a folder (e.g. data/demo)")
    manifest = _read_manifest(out) if out.is_dir() else None
    if out.is_dir() and manifest is None and any(out.iterdir()):
        raise UserError(
            f"{out}: folder is not empty and was not made by utils.data.demo_data; choose another --out or empty it"
        )
    if not force and _up_to_date(out, manifest, seed, small, five_task):
        return False, [out / rel for rel in manifest["files"]]
    if manifest is not None:
        _remove_previous(out, manifest)
        (out / MANIFEST).unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    files = build_demo(out, seed=seed, small=small, five_task=five_task)
    sizes = {f.relative_to(out).as_posix(): f.stat().st_size for f in sorted(files)}
    record = {**_manifest_key(seed, small, five_task), "files": sizes}
    (out / MANIFEST).write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    return True, files


def tree_digest(out: Path | str) -> str:
    """SHA-256 over the relative paths and bytes of every file under ``out`` (determinism checks)."""
    out = Path(out)
    h = hashlib.sha256()
    for p in sorted(q for q in out.rglob("*") if q.is_file()):
        h.update(p.relative_to(out).as_posix().encode())
        h.update(p.read_bytes())
    return h.hexdigest()


# --- contact sheet ----------------------------------------------------------------------------------


def contact_sheet(out: Path | str, sheet: Path | str, height: int = 120) -> Path:
    """Save a PNG of (input | target) pairs per task from a built demo set: the denoise inputs are the
    exact sigma=25 test inputs (seeded by file name), the rest are the files as written."""
    out, sheet = Path(out), Path(sheet)
    test = out / "test"

    def load(p: Path) -> np.ndarray:
        return cv2.cvtColor(cv2.imread(str(p), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)

    rows: list[tuple[str, list[tuple[np.ndarray, np.ndarray]]]] = []
    def pick(paths: list[Path], stems: tuple[str, str]) -> list[Path]:
        chosen = [p for p in paths if p.stem in stems]
        return chosen or paths[:2]  # the small set has other files

    gts = pick(sorted((test / "denoise" / "demo").glob("*.png")), ("coffee_whole", "motorcycle_crop"))
    pairs = []
    for p in gts:
        gt = load(p)
        pairs.append((add_gaussian_noise(gt, 25, np.random.default_rng(benchmark_noise_seed(p.name, 25))), gt))
    rows.append(("denoise sigma=25", pairs))
    ins = pick(sorted((test / "derain" / "demo" / "input").glob("*.png")), ("coffee_crop", "motorcycle_crop"))
    rows.append(("derain", [(load(p), load(p.parent.parent / "target" / p.name)) for p in ins]))
    ins = sorted((test / "dehaze" / "input").glob("*.jpg"))
    ins = [ins[0], ins[-1]] if len(ins) > 1 else ins
    targets = [test / "dehaze" / "target" / (p.name.split("_")[0] + ".png") for p in ins]
    rows.append(("dehaze", [(load(p), load(t)) for p, t in zip(ins, targets)]))

    def thumb(img: np.ndarray) -> np.ndarray:
        h, w = img.shape[:2]
        return cv2.resize(img, (round(w * height / h), height), interpolation=cv2.INTER_AREA)

    gap = 6
    lines = []
    for label, pairs in rows:
        cells = []
        for lq, gt in pairs:
            cells += [thumb(lq), np.full((height, 2, 3), 255, np.uint8), thumb(gt),
                      np.full((height, gap * 2, 3), 255, np.uint8)]
        line = np.concatenate(cells, axis=1)
        banner = np.full((20, line.shape[1], 3), 255, np.uint8)
        cv2.putText(banner, f"{label}: input | target", (4, 15), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1,
                    cv2.LINE_AA)
        lines += [banner, line]
    width = max(line.shape[1] for line in lines)
    padded = [np.pad(line, ((0, 0), (0, width - line.shape[1]), (0, 0)), constant_values=255) for line in lines]
    grid = np.concatenate(padded, axis=0)
    sheet.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(sheet), cv2.cvtColor(grid, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 9])
    return sheet


# --- calibration ------------------------------------------------------------------------------------

CALIBRATION_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "camera", "motorcycle_left")


def _rain100l_size(img: np.ndarray) -> np.ndarray:
    """Shrink to a 321-pixel short side and centre-crop the long side to 481 (Rain100L's size)."""
    img = _resize_short(img, 321)
    h, w = img.shape[:2]
    th, tw = (min(h, 481), min(w, 321)) if h > w else (min(h, 321), min(w, 481))
    top, left = (h - th) // 2, (w - tw) // 2
    return img[top:top + th, left:left + tw]


def calibration_images() -> list[tuple[np.ndarray, np.ndarray | None]]:
    """The natural scikit-image photos at Rain100L's size, with the motorcycle's real depth (others:
    None, i.e. use the depth proxy)."""
    _, _, disparity = skdata.stereo_motorcycle()
    out = []
    for name in CALIBRATION_PHOTOS:
        img = _rain100l_size(load_photo_rgb(name))
        depth = None
        if name == "motorcycle_left":
            depth = _rain100l_size(np.repeat(depth_from_disparity(disparity)[..., None], 3, axis=2))[..., 0]
        out.append((img, depth))
    return out


def measure_calibration(
    seed: int = 0, draws: int = 4, images: list[tuple[np.ndarray, np.ndarray | None]] | None = None
) -> dict[str, dict[str, float]]:
    """Input statistics of the synthetic degradations, to compare with the calibration targets (the
    numbers are recorded in docs/benchmarks/calibration.md#noise-rain-and-haze): PSNR/SSIM of noise (sigma 15/25/50), rain and haze, and
    the rain-layer statistics. ``images``: (uint8 RGB, depth or None for the proxy) pairs, by default
    ``calibration_images()``; haze draws (A, beta) from OTS's grid."""
    images = calibration_images() if images is None else images
    stats: dict[str, list] = {"noise_15": [], "noise_25": [], "noise_50": [], "rain": [], "rain_layer": [], "haze": []}
    for p, (img, depth) in enumerate(images):
        depth = depth_proxy(img) if depth is None else depth
        for sigma in (15, 25, 50):
            noisy = add_gaussian_noise(img, sigma, np.random.default_rng([seed, p, sigma]))
            stats[f"noise_{sigma}"].append(input_quality(noisy, img))
        for d in range(draws):
            rainy = synth_rain(img, np.random.default_rng([seed, p, 100 + d]))
            stats["rain"].append(input_quality(rainy, img))
            stats["rain_layer"].append(list(rain_statistics(rainy, img).values()))
            r = np.random.default_rng([seed, p, 200 + d])
            hazy, _ = synth_haze(img, depth, r, A=float(r.choice(OTS_A)), beta=float(r.choice(OTS_BETA)))
            stats["haze"].append(input_quality(hazy, img))
    out = {}
    for key in ("noise_15", "noise_25", "noise_50", "rain", "haze"):
        arr = np.array(stats[key])
        out[key] = {"psnr": float(arr[:, 0].mean()), "ssim": float(arr[:, 1].mean())}
    layer = np.array(stats["rain_layer"])  # columns: mean_residual, frac_brightened, p99, tilt_deg
    out["rain"].update({
        "mean_residual": float(layer[:, 0].mean()),
        "frac_brightened": float(layer[:, 1].mean()),
        "frac_brightened_p10": float(np.percentile(layer[:, 1], 10)),
        "frac_brightened_p90": float(np.percentile(layer[:, 1], 90)),
        "p99": float(layer[:, 2].mean()),
        "tilt_median": float(np.median(layer[:, 3])),
        "tilt_p10": float(np.percentile(layer[:, 3], 10)),
        "tilt_p90": float(np.percentile(layer[:, 3], 90)),
    })
    return out


def measure_five_task_calibration(
    seed: int = 0, draws: int = 4, images: list[np.ndarray] | None = None
) -> dict[str, dict[str, float]]:
    """Input PSNR/SSIM of the synthetic motion blur and low light (targets: GoPro test and LOL-v1
    eval15, docs/benchmarks/calibration.md#motion-blur-and-low-light), on the demo's test photos as its test set uses them
    (``five_task_calibration_images``) unless ``images`` are given."""
    images = five_task_calibration_images() if images is None else images
    out = {}
    for key, degrade, stream in (("blur", synth_motion_blur, 300), ("lowlight", synth_low_light, 400)):
        q = np.array([input_quality(degrade(img, np.random.default_rng([seed, p, stream + d])), img)
                      for p, img in enumerate(images) for d in range(draws)])
        out[key] = {"psnr": float(q[:, 0].mean()), "ssim": float(q[:, 1].mean())}
    return out


def five_task_calibration_images() -> list[np.ndarray]:
    """Natural photos at the demo test set's scale: whole (256 px long side) and a 256x256 crop."""
    out = []
    for name in ("coffee", "motorcycle_right", "astronaut", "chelsea", "rocket"):
        img = load_photo_rgb(name)
        out += [_resize_long(img, 256), img[:256, :256]]
    return out


# --- command line -----------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m utils.data.demo_data", description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="data/demo", help="output folder (default data/demo)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (same seed, same bytes)")
    parser.add_argument("--small", action="store_true", help="a reduced set, for quick tests")
    parser.add_argument("--force", action="store_true", help="rebuild even if an identical set is there")
    parser.add_argument("--five_task", action="store_true",
                        help="also build the five-task setting's deblur and lowlight sets (the three-task files "
                             "are unchanged); e.g. --out data/demo_five")
    parser.add_argument("--sheet", default=None, help="also save a contact sheet PNG of a few pairs here")
    parser.add_argument("--calibration", action="store_true",
                        help="print the degradations' input statistics (vs the targets in docs/benchmarks/calibration.md) and exit")
    args = parser.parse_args(argv)
    if args.calibration:
        stats = {**measure_calibration(args.seed), **measure_five_task_calibration(args.seed)}
        for key, values in stats.items():
            print(key, " ".join(f"{k}={v:.4g}" for k, v in values.items()))
        return 0
    try:
        if args.seed < 0:
            raise UserError(f"--seed {args.seed}: use a seed >= 0")
        start = time.perf_counter()
        built, files = make_demo(args.out, seed=args.seed, small=args.small, force=args.force,
                                 five_task=args.five_task)
        size = sum(f.stat().st_size for f in files) / 2**20
        verb = "built" if built else "up to date:"
        took = time.perf_counter() - start
        print(f"{verb} {args.out} ({len(files)} files, {size:.1f} MiB, seed {args.seed}) in {took:.1f} s")
        if args.sheet:
            print(f"contact sheet: {contact_sheet(args.out, args.sheet)}")
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
