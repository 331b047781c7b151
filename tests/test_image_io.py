"""utils/data/image_io.py: fast uint8 reading/writing and faithful photo round trips."""
import cv2
import numpy as np
import pytest
from PIL import Image, ImageOps

from utils.data.image_io import Photo, _orient, image_size, load_photo, read_image, save_photo, write_image
from utils.errors import UserError


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def _rgb(rng, h=24, w=36):
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


# --- read_image / write_image ---------------------------------------------------------------------


def test_write_then_read_png_is_exact_and_creates_folders(tmp_path, rng):
    img = _rgb(rng)
    path = tmp_path / "a" / "b" / "x.png"
    write_image(path, img)
    assert np.array_equal(read_image(path), img)
    assert image_size(path) == img.shape[:2]


def test_write_is_deterministic(tmp_path, rng):
    img = _rgb(rng)
    write_image(tmp_path / "1.png", img)
    write_image(tmp_path / "2.png", img)
    assert (tmp_path / "1.png").read_bytes() == (tmp_path / "2.png").read_bytes()


def test_read_grey_16bit_and_alpha_become_uint8_rgb(tmp_path, rng):
    grey = rng.integers(0, 256, (10, 12), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "g.png"), grey)
    out = read_image(tmp_path / "g.png")
    assert out.shape == (10, 12, 3) and out.dtype == np.uint8
    assert all(np.array_equal(out[..., c], grey) for c in range(3))

    rgb16 = rng.integers(0, 65536, (10, 12, 3), dtype=np.uint16)
    cv2.imwrite(str(tmp_path / "c16.png"), rgb16[..., ::-1])  # OpenCV writes BGR
    out = read_image(tmp_path / "c16.png")
    assert out.dtype == np.uint8
    assert np.abs(out.astype(int) - np.rint(rgb16 / 257.0).astype(int)).max() == 0

    rgba = np.dstack([_rgb(rng, 10, 12), np.full((10, 12), 7, np.uint8)])
    Image.fromarray(rgba).save(tmp_path / "a.png")
    assert np.array_equal(read_image(tmp_path / "a.png"), rgba[..., :3])


def test_read_errors_name_the_file(tmp_path):
    with pytest.raises(UserError, match="missing.png: no such image file"):
        read_image(tmp_path / "missing.png")
    bad = tmp_path / "corrupt.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\nnot really a png")
    with pytest.raises(UserError) as err:
        read_image(bad)
    assert str(bad) in str(err.value) and "cannot read this image" in str(err.value)
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    for read in (read_image, image_size, load_photo):  # not OpenCV's assertion text
        with pytest.raises(UserError, match=r"empty.jpg: empty file \(0 bytes\)"):
            read(empty)
    with pytest.raises(UserError, match="corrupt.png: cannot read"):
        image_size(bad)


# --- load_photo / save_photo ------------------------------------------------------------------------


def test_grey_photo_round_trip(tmp_path, rng):
    grey = rng.integers(0, 256, (9, 14), dtype=np.uint8)
    Image.fromarray(grey).save(tmp_path / "g.png")
    photo = load_photo(tmp_path / "g.png")
    assert photo.grayscale and photo.bit_depth == 8 and photo.alpha is None
    assert photo.rgb.shape == (9, 14, 3) and photo.rgb.dtype == np.float32
    save_photo(tmp_path / "out.png", photo.rgb, photo.alpha, photo.bit_depth, photo.grayscale)
    with Image.open(tmp_path / "out.png") as im:
        assert im.mode == "L"
        assert np.array_equal(np.asarray(im), grey)


def test_grey_with_alpha_round_trip(tmp_path, rng):
    la = rng.integers(0, 256, (9, 14, 2), dtype=np.uint8)
    Image.fromarray(la).save(tmp_path / "la.png")
    photo = load_photo(tmp_path / "la.png")
    assert photo.grayscale and np.array_equal(np.rint(photo.alpha * 255), la[..., 1])
    save_photo(tmp_path / "out.png", photo.rgb, photo.alpha, photo.bit_depth, photo.grayscale)
    with Image.open(tmp_path / "out.png") as im:
        assert im.mode == "LA" and np.array_equal(np.asarray(im), la)


def test_rgba_round_trip_keeps_alpha(tmp_path, rng):
    rgba = rng.integers(0, 256, (11, 8, 4), dtype=np.uint8)
    Image.fromarray(rgba).save(tmp_path / "a.png")
    photo = load_photo(tmp_path / "a.png")
    assert not photo.grayscale and photo.alpha is not None
    save_photo(tmp_path / "out.png", photo.rgb, photo.alpha, 8, False)
    with Image.open(tmp_path / "out.png") as im:
        assert im.mode == "RGBA" and np.array_equal(np.asarray(im), rgba)


def test_palette_with_transparency(tmp_path):
    im = Image.new("P", (6, 4))
    im.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * (256 * 3 - 9))
    im.putdata([0, 1, 2, 1] * 6)
    im.info["transparency"] = 2
    im.save(tmp_path / "p.png", transparency=2)
    photo = load_photo(tmp_path / "p.png")
    assert not photo.grayscale and photo.alpha is not None
    ref = np.asarray(Image.open(tmp_path / "p.png").convert("RGBA"), dtype=np.float32) / 255.0
    assert np.array_equal(photo.rgb, ref[..., :3]) and np.array_equal(photo.alpha, ref[..., 3])
    assert photo.alpha.min() == 0.0 and photo.alpha.max() == 1.0


def test_16bit_colour_png_keeps_16_bits(tmp_path, rng):
    rgb16 = rng.integers(0, 65536, (7, 9, 3), dtype=np.uint16)
    cv2.imwrite(str(tmp_path / "c16.png"), rgb16[..., ::-1])
    photo = load_photo(tmp_path / "c16.png")
    assert photo.bit_depth == 16 and not photo.grayscale
    assert np.array_equal(np.rint(photo.rgb * 65535).astype(np.uint16), rgb16)
    for ext in (".png", ".tif"):
        save_photo(tmp_path / f"out{ext}", photo.rgb, None, 16, False)
        back = cv2.imread(str(tmp_path / f"out{ext}"), cv2.IMREAD_UNCHANGED)
        assert back.dtype == np.uint16 and np.array_equal(back[..., ::-1], rgb16)


def test_16bit_grey_tiff_round_trip(tmp_path, rng):
    g16 = rng.integers(0, 65536, (7, 9), dtype=np.uint16)
    cv2.imwrite(str(tmp_path / "g16.tif"), g16)
    photo = load_photo(tmp_path / "g16.tif")
    assert photo.bit_depth == 16 and photo.grayscale
    save_photo(tmp_path / "out.png", photo.rgb, None, 16, True)
    back = cv2.imread(str(tmp_path / "out.png"), cv2.IMREAD_UNCHANGED)
    assert back.dtype == np.uint16 and back.ndim == 2
    assert np.abs(back.astype(int) - g16.astype(int)).max() <= 1  # luma of equal channels


def test_exif_rotated_jpeg_is_upright(tmp_path, rng):
    img = _rgb(rng, 20, 40)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to view
    Image.fromarray(img).save(tmp_path / "r.jpg", exif=exif, quality=95)
    photo = load_photo(tmp_path / "r.jpg")
    assert photo.rgb.shape == (40, 20, 3)
    ref = np.asarray(ImageOps.exif_transpose(Image.open(tmp_path / "r.jpg")), dtype=np.float32) / 255.0
    assert np.array_equal(photo.rgb, ref)
    assert read_image(tmp_path / "r.jpg").shape == (40, 20, 3)  # the fast path is upright too


@pytest.mark.parametrize("orientation", range(1, 9))
def test_manual_orientation_matches_pillow(tmp_path, rng, orientation):
    """The 16-bit path applies EXIF orientation by hand; it must agree with Pillow's."""
    img = _rgb(rng, 5, 7)
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(img).save(tmp_path / "o.png", exif=exif)
    ref = np.asarray(ImageOps.exif_transpose(Image.open(tmp_path / "o.png")))
    assert np.array_equal(_orient(img, orientation), ref)


def test_cmyk_jpeg_becomes_rgb(tmp_path, rng):
    Image.fromarray(_rgb(rng)).convert("CMYK").save(tmp_path / "c.jpg")
    photo = load_photo(tmp_path / "c.jpg")
    ref = np.asarray(Image.open(tmp_path / "c.jpg").convert("RGB"), dtype=np.float32) / 255.0
    assert photo.rgb.shape == (24, 36, 3) and np.array_equal(photo.rgb, ref)


def test_jpeg_save_is_8bit_without_alpha(tmp_path, rng):
    photo = Photo(rng.random((8, 8, 3), dtype=np.float32), np.ones((8, 8), np.float32), 16, False)
    save_photo(tmp_path / "o.jpg", photo.rgb, photo.alpha, photo.bit_depth, photo.grayscale)
    with Image.open(tmp_path / "o.jpg") as im:
        assert im.mode == "RGB" and im.format == "JPEG"


def test_save_and_load_errors(tmp_path):
    with pytest.raises(UserError, match="unknown image extension"):
        save_photo(tmp_path / "x.xyz", np.zeros((2, 2, 3), np.float32))
    with pytest.raises(UserError, match="nope.png: no such image file"):
        load_photo(tmp_path / "nope.png")
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"definitely not a jpeg")
    with pytest.raises(UserError, match="bad.jpg: cannot read this image"):
        load_photo(bad)


# --- the pixel limit --------------------------------------------------------------------------------


def test_an_image_over_the_pixel_limit_is_one_line_naming_the_limit_and_the_option(tmp_path):
    from tests.conftest import png_claiming
    from utils.data.image_io import DEFAULT_MAX_PIXELS

    bomb = png_claiming(tmp_path / "bomb.png", 20000, 20000)  # 400 megapixels claimed by ~100 bytes
    for read in (image_size, load_photo):
        with pytest.raises(UserError) as caught:
            read(bomb)
        message = str(caught.value)
        assert len(message.splitlines()) == 1 and str(bomb) in message
        assert "--max_pixels" in message and f"{DEFAULT_MAX_PIXELS:,}" in message and "400,000,000" in message
    assert image_size(bomb, max_pixels=400_000_000) == (20000, 20000)  # raised: the header is read


@pytest.mark.parametrize("width,height", [(12000, 9000), (13400, 13400)])  # a 108 MP photo; Pillow's old error
def test_photos_below_the_limit_give_no_warning(tmp_path, width, height):
    import warnings

    from tests.conftest import png_claiming

    path = png_claiming(tmp_path / "big.png", width, height)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Pillow's DecompressionBombWarning would fail here
        assert image_size(path) == (height, width)
