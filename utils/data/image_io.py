"""Reading and writing images.

Two paths:

* ``read_image`` / ``write_image``: the fast uint8 RGB path for training and benchmark tests (OpenCV).
* ``load_photo`` / ``save_photo``: the faithful path for ``demo.py`` (restoring a user's own photo):
  EXIF orientation, grey and palette images, transparency and 16-bit depth survive the round trip.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from utils.atomic import write_bytes, write_file
from utils.data.pixel_limit import DEFAULT_MAX_PIXELS, check_pixels
from utils.errors import UserError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")
# IMAGE_EXTENSIONS: the files of data sets (what the benchmarks ship); PHOTO_EXTENSIONS: a user's photos,
# what demo.py takes and save_photo writes back in the same format
PHOTO_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
# check_pixels replaces Pillow's own guard (a warning from 89 megapixels, an error from 179), which
# named neither the limit nor a way to raise it
Image.MAX_IMAGE_PIXELS = None
# A file OpenCV cannot decode is reported by us in one line; its own warnings would add more
cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
_EXIF_ORIENTATION = 0x0112


def _cannot_read(path: Path | str) -> UserError:
    return UserError(f"{path}: cannot read this image (corrupt or not an image); remove or replace it")


def _read_bytes(path: Path | str) -> np.ndarray:
    try:
        data = np.fromfile(str(path), dtype=np.uint8)  # also works for non-ASCII paths, unlike cv2.imread
    except FileNotFoundError:
        raise UserError(f"{path}: no such image file; check the path") from None
    except (IsADirectoryError, PermissionError, OSError) as exc:
        raise UserError(f"{path}: cannot open ({exc.strerror or exc}); check the path and its permissions") from None
    if data.size == 0:
        raise UserError(f"{path}: empty file (0 bytes); remove it or replace it with the image")
    return data


def read_image(path: Path | str) -> np.ndarray:
    """Decode an image file to uint8 HxWx3 RGB with OpenCV (EXIF orientation applied).

    Grey images become 3 identical channels, 16-bit images are scaled to 8 bits, alpha is dropped.
    Raises UserError (one line naming the file) when the file is missing, unreadable or not an image.
    """
    data = _read_bytes(path)
    img = cv2.imdecode(data, cv2.IMREAD_COLOR | cv2.IMREAD_ANYDEPTH)
    if img is None:
        raise _cannot_read(path)
    if img.dtype == np.uint16:
        img = np.rint(img.astype(np.float32) / 257.0).astype(np.uint8)  # 65535 -> 255
    elif img.dtype != np.uint8:  # e.g. float TIFF in [0, 1]
        img = np.rint(np.clip(img.astype(np.float32), 0.0, 1.0) * 255.0).astype(np.uint8)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def write_image(path: Path | str, rgb: np.ndarray, replace: bool = True) -> None:
    """Write a uint8 HxWx3 RGB image (format from the extension), creating parent folders; whole
    or not at all, and over a file already there only with ``replace`` (``utils.atomic``).

    PNGs carry no timestamp, so the same array always gives the same bytes.
    """
    path = Path(path)
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"write_image expects uint8 HxWx3, got {rgb.dtype} {rgb.shape}")
    params = [cv2.IMWRITE_JPEG_QUALITY, 95] if path.suffix.lower() in (".jpg", ".jpeg") else []
    ok, buf = cv2.imencode(path.suffix, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), params)
    if not ok:
        raise UserError(f"{path}: cannot write this image format; use .png, .jpg or .tif")
    write_bytes(path, buf.tobytes(), replace)


def image_size(path: Path | str, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[int, int]:
    """(height, width) as ``read_image`` returns the image (EXIF orientation applied), read from the
    file header only (cheap; no decode). UserError above ``max_pixels`` (:func:`check_pixels`)."""
    try:
        with Image.open(path) as im:
            w, h = im.size
            check_pixels(path, w, h, max_pixels)
            try:
                rotated = int(im.getexif().get(_EXIF_ORIENTATION, 1)) in (5, 6, 7, 8)
            except Exception:  # malformed EXIF: OpenCV ignores it too
                rotated = False
        return (w, h) if rotated else (h, w)
    except FileNotFoundError:
        raise UserError(f"{path}: no such image file; check the path") from None
    except (UnidentifiedImageError, OSError, ValueError):
        img = read_image(path)  # formats Pillow cannot parse but OpenCV can; raises if corrupt
        return img.shape[0], img.shape[1]


# --- Faithful photo I/O for demo.py ---------------------------------------------------------------


@dataclass
class Photo:
    """A user's photo as the network sees it, plus what is needed to save it back alike.

    rgb: float32 HxWx3 in [0, 1] (grey photos have 3 equal channels); alpha: float32 HxW in [0, 1]
    or None; bit_depth: 8 or 16 (of the source file); grayscale: the source had one colour channel.
    """

    rgb: np.ndarray
    alpha: np.ndarray | None
    bit_depth: int
    grayscale: bool



def _orient(arr: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation tag (1-8) to an HxW[xC] array, as ImageOps.exif_transpose does."""
    ops = {
        2: lambda a: a[:, ::-1],
        3: lambda a: a[::-1, ::-1],
        4: lambda a: a[::-1],
        5: lambda a: np.swapaxes(a, 0, 1),
        6: lambda a: np.rot90(a, -1),
        7: lambda a: np.rot90(a, 2).swapaxes(0, 1),
        8: lambda a: np.rot90(a, 1),
    }
    return np.ascontiguousarray(ops[orientation](arr)) if orientation in ops else arr


def _is_16bit(im: Image.Image) -> bool:
    if im.mode.startswith("I;16") or im.mode == "I":
        return True
    rawmode = im.tile[0].args if im.tile else None
    rawmode = rawmode[0] if isinstance(rawmode, tuple) else rawmode
    return isinstance(rawmode, str) and ";16" in rawmode


def _photo_from_cv2(data: np.ndarray, path: Path | str, orientation: int) -> Photo:
    """16-bit (or Pillow-unreadable) files: OpenCV keeps 16 bits where Pillow drops to 8."""
    img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if img is None:
        raise _cannot_read(path)
    img = _orient(img, orientation)
    depth = 16 if img.dtype == np.uint16 else 8
    scale = 65535.0 if img.dtype == np.uint16 else 255.0 if img.dtype == np.uint8 else 1.0
    img = np.clip(img.astype(np.float32) / scale, 0.0, 1.0)
    channels = 1 if img.ndim == 2 else img.shape[2]
    if img.ndim == 2:
        img = img[..., None]
    alpha = img[..., -1].copy() if channels in (2, 4) else None
    if channels <= 2:
        rgb = np.repeat(img[..., :1], 3, axis=2)
    else:
        rgb = img[..., 2::-1]  # BGR -> RGB
    return Photo(np.ascontiguousarray(rgb), alpha, depth, channels <= 2)


def load_photo(path: Path | str, max_pixels: int = DEFAULT_MAX_PIXELS) -> Photo:
    """Load a user's photo faithfully (Pillow, EXIF orientation applied).

    Handles 1-bit, L, LA, P (palette, with its transparency), RGB, RGBA, CMYK and YCbCr images, and
    16-bit grey or colour PNG/TIFF (decoded with OpenCV, as Pillow reduces 16-bit colour to 8 bits;
    the EXIF orientation is then applied by hand). Raises UserError for missing or corrupt files,
    and for more than ``max_pixels`` pixels (checked from the header, before decoding).
    """
    data = _read_bytes(path)
    try:
        im = Image.open(path)
        if im.width * im.height > max_pixels:
            im.close()
            check_pixels(path, *im.size, max_pixels)
        sixteen_bit = _is_16bit(im)  # before load(), which clears the tile list
        im.load()
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        return _photo_from_cv2(data, path, 1)  # e.g. formats only OpenCV reads; raises if corrupt
    try:
        orientation = int(im.getexif().get(_EXIF_ORIENTATION, 1))
    except Exception:  # malformed EXIF: ignore it, like most viewers do
        orientation = 1
    if sixteen_bit or im.mode == "F":
        if im.mode == "F":  # 32-bit float grey: values in [0, 1] or in 16-bit units
            arr = np.asarray(im, dtype=np.float32)
            arr = arr / 65535.0 if arr.max() > 1.0 else arr
            arr = np.clip(_orient(arr, orientation), 0.0, 1.0)
            return Photo(np.repeat(arr[..., None], 3, axis=2), None, 16, True)
        return _photo_from_cv2(data, path, orientation)
    im = ImageOps.exif_transpose(im)
    if im.mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    elif im.mode == "PA":
        im = im.convert("RGBA")
    if im.mode in ("1", "L", "LA", "La"):
        gray = im.convert("LA") if im.mode != "L" else im
        arr = np.asarray(gray, dtype=np.float32) / 255.0
        if arr.ndim == 2:
            return Photo(np.repeat(arr[..., None], 3, axis=2), None, 8, True)
        alpha = arr[..., 1].copy() if im.mode in ("LA", "La") else None
        return Photo(np.repeat(arr[..., :1], 3, axis=2), alpha, 8, True)
    has_alpha = im.mode in ("RGBA", "RGBa") or "transparency" in im.info
    arr = np.asarray(im.convert("RGBA" if has_alpha else "RGB"), dtype=np.float32) / 255.0
    alpha = arr[..., 3].copy() if has_alpha else None
    return Photo(np.ascontiguousarray(arr[..., :3]), alpha, 8, False)


def save_photo(
    path: Path | str,
    rgb: np.ndarray,
    alpha: np.ndarray | None = None,
    bit_depth: int = 8,
    grayscale: bool = False,
    replace: bool = True,
) -> None:
    """Save a float HxWx3 image in [0, 1] (e.g. a restored ``Photo``) by the file extension.

    PNG and TIFF keep 8 or 16 bits, the alpha channel and grey images (written back with one
    channel, from ITU-R BT.601 luma). JPEG is always 8-bit, quality 95, and cannot hold alpha (it is
    dropped). 16-bit grey with alpha is written as 16-bit RGBA (no common writer supports it).
    Creates parent folders; written whole or not at all, over a file already there only with
    ``replace`` (``utils.atomic``; callers make sure it is not an input).
    """
    path = Path(path)
    ext = path.suffix.lower()
    if ext not in PHOTO_EXTENSIONS:
        raise UserError(f"{path}: unknown image extension; use .png, .tif or .jpg")
    if bit_depth not in (8, 16):
        raise ValueError(f"bit_depth must be 8 or 16, got {bit_depth}")
    if ext not in (".png", ".tif", ".tiff"):
        bit_depth = 8
    if ext in (".jpg", ".jpeg"):
        alpha = None
    rgb = np.clip(np.asarray(rgb, dtype=np.float32), 0.0, 1.0)
    if rgb.ndim == 2:
        rgb = np.repeat(rgb[..., None], 3, axis=2)
    # HxWx1 (BT.601 luma) or HxWx3
    planes = (rgb @ np.array([0.299, 0.587, 0.114], np.float32))[..., None] if grayscale else rgb
    if alpha is not None:
        planes = np.concatenate([planes, np.clip(alpha, 0.0, 1.0)[..., None].astype(np.float32)], axis=2)
    if bit_depth == 16:
        arr = np.rint(planes * 65535.0).astype(np.uint16)
        if arr.shape[2] == 2:  # grey + alpha -> RGBA
            arr = np.concatenate([np.repeat(arr[..., :1], 3, axis=2), arr[..., 1:]], axis=2)
        if arr.shape[2] >= 3:
            arr = arr[..., [2, 1, 0, 3][: arr.shape[2]]]  # RGB(A) -> BGR(A) for OpenCV
        ok, buf = cv2.imencode(ext, arr[..., 0] if arr.shape[2] == 1 else arr)
        if not ok:
            raise UserError(f"{path}: cannot write a 16-bit image in this format; use .png or .tif")
        write_bytes(path, buf.tobytes(), replace)
        return
    arr = np.rint(planes * 255.0).astype(np.uint8)
    im = Image.fromarray(arr[..., 0] if arr.shape[2] == 1 else arr)  # mode L, LA, RGB or RGBA
    if ext == ".bmp" and im.mode == "LA":
        im = im.convert("RGBA")
    options = {"quality": 95} if ext in (".jpg", ".jpeg") else {}
    write_file(path, lambda f: im.save(f, format=Image.registered_extensions()[ext], **options), replace)


def to_tensor(img: np.ndarray) -> torch.Tensor:
    """uint8 HxWx3 -> float32 3xHxW in [0, 1]."""
    chw = np.ascontiguousarray(img.transpose(2, 0, 1), dtype=np.float32)  # 3xHxW
    chw /= np.float32(255.0)
    return torch.from_numpy(chw)

