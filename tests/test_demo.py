"""demo.py, run as a user would (subprocess): any size and image kind comes back alike,
inputs are never overwritten, bad files and bad setups give one clear line."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

import demo
from net.model import ModelConfig, TextPromptIR
from utils.checkpoint import save_checkpoint
from utils.errors import UserError
from utils.runtime.engine import forward_image

ROOT = Path(__file__).resolve().parents[1]


def run_demo(*args: str | Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "demo.py", "--no_progress", *map(str, args)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def assert_one_line_error(res: subprocess.CompletedProcess, *words: str) -> None:
    assert res.returncode == 2, res.stderr
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    assert "Traceback" not in res.stderr
    for word in words:
        assert word in lines[0]


def test_any_size_and_kind_comes_back_alike(tmp_path, tiny_ckpt):
    rng = np.random.default_rng(0)
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    Image.fromarray(rng.integers(0, 256, (53, 37, 3), dtype=np.uint8)).save(src / "odd.png")  # 37x53
    Image.fromarray(rng.integers(0, 256, (41, 30), dtype=np.uint8)).save(src / "grey.png")
    rgba = rng.integers(0, 256, (33, 45, 4), dtype=np.uint8)
    Image.fromarray(rgba, "RGBA").save(src / "alpha.png")
    deep = rng.integers(0, 65536, (31, 29, 3), dtype=np.uint16)
    cv2.imwrite(str(src / "deep.png"), deep)
    Image.fromarray(rng.integers(0, 256, (19, 23, 3), dtype=np.uint8)).quantize(16).save(src / "palette.png")
    oriented = Image.fromarray(rng.integers(0, 256, (20, 50, 3), dtype=np.uint8))  # stored 50 wide, 20 high
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    oriented.save(src / "rotated.jpg", exif=exif)
    before = {p.name: p.read_bytes() for p in src.iterdir()}

    # --tile 16 makes every image go through the tiled path
    res = run_demo("--ckpt", tiny_ckpt, "--input", src, "--output", out, "--task", "denoise",
                   "--tile", "16", "--tile_overlap", "4", "--compare")
    assert res.returncode == 0, res.stderr
    assert "understood as" in res.stdout and "summary: 6 succeeded, 0 failed" in res.stdout
    assert before == {p.name: p.read_bytes() for p in src.iterdir()}  # inputs untouched

    odd = Image.open(out / "odd.png")
    assert odd.size == (37, 53) and odd.mode == "RGB"
    grey = Image.open(out / "grey.png")
    assert grey.size == (30, 41) and grey.mode == "L"
    alpha = Image.open(out / "alpha.png")
    assert alpha.mode == "RGBA"
    np.testing.assert_array_equal(np.asarray(alpha)[..., 3], rgba[..., 3])  # alpha kept exactly
    deep_out = cv2.imread(str(out / "deep.png"), cv2.IMREAD_UNCHANGED)
    assert deep_out.dtype == np.uint16 and deep_out.shape == deep.shape
    assert Image.open(out / "palette.png").size == (23, 19)
    assert Image.open(out / "rotated.jpg").size == (20, 50)  # displayed orientation
    compare = Image.open(out / "odd_compare.png")
    assert compare.size == (2 * 37 + demo.COMPARE_GAP, 53)


def test_out_format_and_suffix_change_only_the_name(tmp_path, tiny_ckpt):
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    cv2.imwrite(str(src / "deep.png"), np.full((24, 24, 3), 40000, np.uint16))
    res = run_demo("--ckpt", tiny_ckpt, "--input", str(src / "*.png"), "--output", out,
                   "--instruction", "remove the noise", "--out_format", "jpg", "--suffix", "_fixed", "--tile", "0")
    assert res.returncode == 0, res.stderr
    assert [p.name for p in out.iterdir()] == ["deep_fixed.jpg"]
    assert Image.open(out / "deep_fixed.jpg").size == (24, 24)


def test_refuses_to_write_into_the_input_folder(tmp_path, tiny_ckpt):
    src = tmp_path / "photos"
    src.mkdir()
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(src / "a.png")
    before = (src / "a.png").read_bytes()
    res = run_demo("--ckpt", tiny_ckpt, "--input", src, "--output", tmp_path / "photos" / ".." / "photos",
                   "--task", "dehaze")
    assert_one_line_error(res, "--output")
    assert (src / "a.png").read_bytes() == before
    assert [p.name for p in src.iterdir()] == ["a.png"]


def test_one_bad_file_does_not_stop_the_batch(tmp_path, tiny_ckpt):
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    for name in ("a.png", "c.jpg"):
        Image.fromarray(np.full((20, 30, 3), 128, np.uint8)).save(src / name)
    (src / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not really a png")
    res = run_demo("--ckpt", tiny_ckpt, "--input", src, "--output", out, "--instruction", "remove the rain")
    assert res.returncode not in (0, 2)  # ran, but not everything succeeded
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "c.jpg"]
    errors = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "b.png" in errors[0]
    assert "summary: 2 succeeded, 1 failed" in res.stdout
    assert "Traceback" not in res.stderr


def test_empty_instruction_is_one_line(tmp_path, tiny_ckpt):
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(tmp_path / "a.png")
    res = run_demo("--ckpt", tiny_ckpt, "--input", tmp_path / "a.png", "--output", tmp_path / "out",
                   "--instruction", "   ")
    assert_one_line_error(res, "empty instruction")


def test_foreign_checkpoint_is_one_line(tmp_path):
    torch.save({"a": 1}, tmp_path / "other.pt")
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(tmp_path / "a.png")
    res = run_demo("--ckpt", tmp_path / "other.pt", "--input", tmp_path / "a.png", "--output", tmp_path / "out",
                   "--task", "derain")
    assert_one_line_error(res, "other.pt", "not a checkpoint written by train.py")


def test_missing_text_encoder_is_one_line(tmp_path, tiny_ckpt):
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(tmp_path / "a.png")
    res = run_demo("--ckpt", tiny_ckpt, "--input", tmp_path / "a.png", "--output", tmp_path / "out",
                   "--task", "derain", "--text_ckpt", tmp_path / "no_encoder")
    assert_one_line_error(res, "no_encoder", "train.py --stage text")


# --- input and output planning, in-process ----------------------------------------------------------


def test_inputs_from_file_folder_and_glob(tmp_path):
    for name in ("b.png", "a.JPG", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "c.png").write_bytes(b"x")
    assert demo.collect_inputs(str(tmp_path / "b.png")) == [tmp_path / "b.png"]
    assert demo.collect_inputs(str(tmp_path)) == [tmp_path / "a.JPG", tmp_path / "b.png"]  # images only
    assert demo.collect_inputs(str(tmp_path / "**" / "*.png")) == [tmp_path / "b.png", tmp_path / "sub" / "c.png"]
    with pytest.raises(UserError, match="no image matches"):
        demo.collect_inputs(str(tmp_path / "*.gif"))


def test_outputs_never_land_on_inputs(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    inputs = [a / "x.png", b / "x.png"]
    for p in inputs:
        p.write_bytes(b"x")
    out = tmp_path / "out"
    output_paths = demo.choose_output_paths(inputs, out, "same", "", compare=False)
    assert output_paths == {a / "x.png": out / "x.png"}  # the second x.png would clash: skipped
    with pytest.raises(UserError, match="holds the input images"):
        demo.choose_output_paths(inputs, b / ".." / "a", "png", "_r", compare=False)


class OOMAbove(torch.nn.Module):
    """Identity that runs out of memory on inputs larger than ``limit`` pixels."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit
        self.p = torch.nn.Parameter(torch.zeros(()))
        self.config = ModelConfig(dim=8)

    def forward(self, x: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        if x.shape[-2] * x.shape[-1] > self.limit:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 9 GiB")
        return x.clone()


def test_out_of_memory_retries_with_smaller_tiles():
    rgb = np.random.default_rng(0).random((200, 150, 3), dtype=np.float32)
    model = OOMAbove(limit=100 * 100)
    out, tile = forward_image(model, rgb, torch.zeros(1, 4), torch.device("cpu"), None, 16, "fp32",
                              budget=1 << 40, progress=False)  # the budget says "fits", the forward disagrees
    assert tile is not None and tile * tile <= 100 * 100
    np.testing.assert_allclose(out, rgb, atol=1e-6)
    with pytest.raises(torch.OutOfMemoryError):  # an explicit --tile is the user's choice: no retry
        forward_image(model, rgb, torch.zeros(1, 4), torch.device("cpu"), 128, 16, "fp32", budget=None,
                      progress=False)


def exploding_ckpt(tmp_path: Path, text_ckpt: Path) -> Path:
    """Finite weights (so the checkpoint can be written) that make every output inf/NaN."""
    net = TextPromptIR(ModelConfig(text_dim=384, dim=8, num_blocks=(1, 1, 1, 1), num_refinement_blocks=1,
                                   heads=(1, 1, 1, 1)))
    with torch.no_grad():
        net.output.weight.fill_(3e38)
    path = tmp_path / "bad.pt"
    save_checkpoint(path, {"model": net.state_dict(), "config": net.config.to_dict(),
                           "text_encoder": {"dir": str(text_ckpt), "id": "test"}})
    return path


def test_nan_output_fails_the_image_instead_of_writing_black(tmp_path, text_ckpt):
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(np.full((24, 32, 3), 128, np.uint8)).save(src / "a.png")
    res = run_demo("--ckpt", exploding_ckpt(tmp_path, text_ckpt), "--input", src / "a.png", "--task", "derain",
                   "--output", tmp_path / "out")
    assert res.returncode == 1 and "summary: 0 succeeded, 1 failed" in res.stdout
    errors = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "a.png" in errors[0] and "NaN/inf" in errors[0]
    assert not (tmp_path / "out" / "a.png").exists()


def test_a_hard_link_to_an_input_is_not_overwritten(tmp_path, tiny_ckpt):
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    out.mkdir()
    Image.fromarray(np.full((16, 16, 3), 200, np.uint8)).save(src / "a.png")
    os.link(src / "a.png", out / "a.png")  # the same file under the output name
    before = (src / "a.png").read_bytes()
    res = run_demo("--ckpt", tiny_ckpt, "--input", src / "a.png", "--task", "denoise", "--output", out)
    assert res.returncode == 1 and "would overwrite an input" in res.stderr
    assert (src / "a.png").read_bytes() == before


def test_an_output_folder_that_cannot_be_made_is_found_before_any_work(tmp_path, tiny_ckpt):
    src = tmp_path / "a.png"
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(src)
    (tmp_path / "file").write_text("a file, not a folder")
    # a missing checkpoint too: the output folder is checked first, before anything is loaded
    res = run_demo("--ckpt", tmp_path / "missing.pt", "--input", src, "--task", "denoise",
                   "--output", tmp_path / "file" / "out")
    assert_one_line_error(res, str(tmp_path / "file" / "out"), "cannot write the results there")


@pytest.mark.parametrize("flag", [["--max_memory", "-1"], ["--max_memory", "0"], ["--tile", "-8"]])
def test_impossible_numbers_are_refused_in_one_line(tmp_path, tiny_ckpt, flag):
    res = run_demo("--ckpt", tiny_ckpt, "--input", tmp_path, "--task", "denoise", *flag)
    assert_one_line_error(res, flag[0])


def test_a_very_long_instruction_is_echoed_short(tmp_path, tiny_ckpt):
    src = tmp_path / "a.png"
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(src)
    res = run_demo("--ckpt", tiny_ckpt, "--input", src, "--output", tmp_path / "out",
                   "--instruction", "please remove the rain " * 435)  # 10,005 characters
    assert res.returncode == 0, res.stderr
    echo = next(line for line in res.stdout.splitlines() if line.startswith("instruction: "))
    assert len(echo) < 300 and "(10004 characters)" in echo  # whitespace-normalised: no trailing space


def test_a_retrained_encoder_is_refused_and_paths_resolve_from_the_checkpoint(tmp_path, text_ckpt):
    import shutil

    from net.text_encoder import InstructionEncoder
    from utils.text.encoder_link import encoder_record

    run_dir = tmp_path / "runs" / "r"
    encoder_dir = tmp_path / "runs" / "text_encoder"
    shutil.copytree(text_ckpt, encoder_dir)
    net = TextPromptIR(ModelConfig(text_dim=384, dim=8, num_blocks=(1, 1, 1, 1), num_refinement_blocks=1,
                                   heads=(1, 1, 1, 1)))
    encoder = InstructionEncoder.load(encoder_dir)
    record = encoder_record({"fingerprint": encoder.fingerprint(), "bank_sha256": "x", "encoder_id": "e",
                             "hidden_size": 384}, encoder_dir, run_dir)
    assert record["dir"] == "../text_encoder"
    ckpt = run_dir / "last.pt"
    save_checkpoint(ckpt, {"model": net.state_dict(), "config": net.config.to_dict(), "text_encoder": record})
    src = tmp_path / "a.png"
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(src)
    res = run_demo("--ckpt", ckpt, "--input", src, "--output", tmp_path / "out", "--task", "derain")
    assert res.returncode == 0, res.stderr  # found beside the checkpoint, not in the working directory
    with torch.no_grad():  # re-train the encoder in place
        encoder.head.weight.add_(1.0)
    encoder.save(encoder_dir)
    res = run_demo("--ckpt", ckpt, "--input", src, "--output", tmp_path / "out2", "--task", "derain")
    assert_one_line_error(res, "is not the instruction encoder", "--text_ckpt")


def run_demo_here(capsys, *args: str | Path) -> subprocess.CompletedProcess:
    """demo.py's main in this process: what ``run_demo`` returns, without the start-up time."""
    capsys.readouterr()
    code = demo.main(["--no_progress", *map(str, args)])
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(["demo.py", *map(str, args)], code, out, err)


@pytest.mark.parametrize("suffix", ["/../../x", "_a/b", "..", "_..x", "/abs", "a\\b"])
def test_a_suffix_that_could_leave_the_output_folder_is_refused(tmp_path, tiny_ckpt, suffix, capsys):
    src, out = tmp_path / "a/b/in", tmp_path / "a/b/out"
    src.mkdir(parents=True)
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(src / "photo.png")
    res = run_demo_here(capsys, "--ckpt", tiny_ckpt, "--input", src, "--output", out, "--task", "denoise",
                        "--suffix", suffix)
    assert_one_line_error(res, "--suffix")
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()) == [
        "a/b/in/photo.png"]


def test_results_already_written_are_never_replaced_without_overwrite(tmp_path, tiny_ckpt, capsys):
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a.png", "b.png", "c.png"):
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(src / name)
    common = ("--ckpt", tiny_ckpt, "--input", src, "--output", out, "--tile", "0")
    res = run_demo_here(capsys, *common, "--task", "denoise")
    assert res.returncode == 0, res.stderr
    (src / "d.png").write_bytes((src / "a.png").read_bytes())
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    res = run_demo_here(capsys, *common, "--task", "derain", "--compare")
    assert_one_line_error(res, str(out / "a.png"), "3 of the 8", "--overwrite")
    assert "understood as" not in res.stdout  # refused before any work
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    res = run_demo_here(capsys, *common, "--task", "derain", "--compare", "--overwrite")
    assert res.returncode == 0, res.stderr
    assert len(list(out.iterdir())) == 8


def test_a_glob_through_a_symlink_loop_restores_each_file_once(tmp_path, tiny_ckpt):
    loop = tmp_path / "inputs" / "loop"
    loop.mkdir(parents=True)
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(loop / "a.png")
    (loop / "self").symlink_to(".", target_is_directory=True)
    pattern = str(loop / "**" / "*.png")
    assert demo.collect_inputs(pattern) == [loop / "a.png"]
    res = run_demo("--ckpt", tiny_ckpt, "--input", pattern, "--task", "denoise", "--output", tmp_path / "out")
    assert res.returncode == 0, res.stderr
    assert "summary: 1 succeeded, 0 failed" in res.stdout


def test_a_format_that_cannot_be_written_is_refused_before_any_work(tmp_path):
    gif = tmp_path / "anim.gif"
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(gif)
    # a missing checkpoint too: the output format is checked first, before anything is loaded
    res = run_demo("--ckpt", tmp_path / "missing.pt", "--input", gif, "--task", "denoise", "--output", tmp_path / "out")
    assert_one_line_error(res, str(gif), "--out_format png")
    assert not (tmp_path / "out").exists()


def test_a_photo_over_the_pixel_limit_fails_in_one_line_naming_the_option(tmp_path, tiny_ckpt):
    from tests.conftest import png_claiming

    src = tmp_path / "photos"
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(png_claiming(src / "bomb.png", 20000, 20000).with_name("ok.png"))
    res = run_demo("--ckpt", tiny_ckpt, "--input", src, "--task", "denoise", "--output", tmp_path / "out")
    assert res.returncode == 1, res.stderr
    errors = [line for line in res.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "bomb.png" in errors[0] and "--max_pixels" in errors[0]
    assert "Traceback" not in res.stderr and "summary: 1 succeeded, 1 failed" in res.stdout
