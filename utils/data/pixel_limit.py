"""The largest image the scripts read (``--max_pixels``), checked from the file header before any
decode, so that a decompression bomb is refused in one line that names the limit and the fix."""
from __future__ import annotations

from pathlib import Path

from utils.errors import UserError

# The largest image read, in pixels (the scripts' --max_pixels): a file whose header claims more is
# refused before it is decoded, as a possible decompression bomb (a small file that expands to
# gigabytes). 2^28 = 16384x16384 is more than a photo camera makes; decoded, it takes 0.75 GiB as
# 8-bit RGB and 3 GiB as the float image demo.py restores.
DEFAULT_MAX_PIXELS = 2**28
OPENCV_MAX_PIXELS = 2**30  # OpenCV decodes no more (its default CV_IO_MAX_IMAGE_PIXELS)

def check_pixels(path: Path | str, width: int, height: int, max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
    """UserError, naming the limit and how to raise it, for an image of more than ``max_pixels``."""
    pixels = width * height
    if pixels <= max_pixels:
        return
    fix = (f"if you trust this file, pass --max_pixels {pixels}" if pixels <= OPENCV_MAX_PIXELS else
           f"OpenCV decodes at most {OPENCV_MAX_PIXELS:,} pixels: downscale or cut it first")
    raise UserError(f"{path}: {width}x{height} is {pixels:,} pixels, more than the limit of {max_pixels:,} "
                    f"that guards against decompression bombs; {fix}")
