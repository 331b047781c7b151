"""Every script's options, each given an invalid value: one line on stderr, exit 2, no traceback,
and no work done. The scripts' ``main(argv)`` runs in-process (``utils.cli.cli_main`` is what
turns errors into the line); a subprocess covers what only a real command line can pass."""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import bench
import demo
import train
from tests.conftest import ROOT, TINY_NET

_spec = importlib.util.spec_from_file_location("test_script", ROOT / "test.py")
test_script = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(test_script)

README = str(ROOT / "README.md")  # a file where a folder is expected
HUGE = "99999999999999999999999"

# option -> bad value(s); the error line must name the option (its first word here)
TRAIN_BAD = [
    ["--patch_size", "100000"], ["--patch_size", "0"], ["--patch_size", "abc"],
    ["--repeat", "dehaze=1000000000"], ["--repeat", "derain=0"], ["--repeat", "snow=3"],
    ["--heads", "3", "3", "3", "3"], ["--dim", "7"], ["--dim", "100000"], ["--num_blocks", "1", "1", "1", "0"],
    ["--num_blocks", "1", "1", "1", "1000"], ["--num_refinement_blocks", "-1"],
    ["--ffn_expansion_factor", "0.001"], ["--ffn_expansion_factor", "inf"], ["--ffn_expansion_factor", "nan"],
    ["--weight_decay", "-1"], ["--weight_decay", "nan"], ["--lr", "inf"], ["--lr", "0"], ["--lr", "nan"],
    ["--text_lr", "inf"], ["--grad_clip", "-1"], ["--grad_clip", "nan"],
    ["--seed", "-1"], ["--seed", HUGE], ["--seed", "1.5"],
    ["--cache_gb", "nan"], ["--cache_gb", "inf"], ["--cache_gb", "-1"],
    ["--ckpt_dir", README], ["--log_dir", README],
    ["--name", ""], ["--name", "a/b"], ["--name", ".."], ["--name", "\udcff"],
    ["--list_dir", "no/such/lists"], ["--val_root", "no/such/test"],
    ["--epochs", "0"], ["--warmup_epochs", "-1"], ["--batch_size", "0"], ["--num_workers", "-1"],
    ["--max_steps", "-1"], ["--save_every", "-1"], ["--val_every", "-1"], ["--val_max_images", "0"],
    ["--log_every", "0"], ["--text_epochs", "0"], ["--text_batch_size", "0"],
    ["--de_type", "snow"], ["--synthesize", "denoise"], ["--loss", "l3"], ["--stage", "both"],
    ["--preset", "huge"], ["--device", "tpu"], ["--precision", "fp8"], ["--impl", "magic"],
    ["--layernorm_type", "none"], ["--text_cond", "clip"], ["--pooling", "max"],
    ["--max_pixels", "0"], ["--max_pixels", HUGE], ["--max_pixels", "nan"],
    ["--identity_share", "-0.1"], ["--identity_share", "0.9"], ["--identity_share", "nan"],
    ["--identity_share", "haze=0.1"], ["--identity_share", "dehaze=0.9"], ["--identity_share", "dehaze="],
    ["--identity_floor", "5"], ["--identity_floor", "nan"],
    ["--init", "no/such/release/folder"],
]

TEST_BAD = [
    ["--name", ""], ["--name", "a/b"], ["--name", ".."], ["--name", "\udcff"],
    ["--output_dir", README], ["--mode", "desnow"], ["--num_workers", "-1"], ["--instruction", "   "],
    ["--device", "tpu"], ["--precision", "fp8"], ["--impl", "magic"], ["--preset", "huge"],
    ["--max_pixels", "0"], ["--max_pixels", "inf"],
]

DEMO_BAD = [
    ["--max_memory", "inf"], ["--max_memory", "nan"], ["--max_memory", "-1"], ["--max_memory", "0"],
    ["--tile", "-8"], ["--tile", "12"], ["--tile", "abc"], ["--tile_overlap", "-1"],
    ["--out_format", "gif"], ["--instruction", ""], ["--device", "tpu"], ["--precision", "fp8"],
    ["--impl", "magic"], ["--max_pixels", "0"], ["--max_pixels", HUGE], ["--output", README],
]

BENCH_BAD = [
    ["--cache_gb", "nan"], ["--cache_gb", "-1"], ["--timeout", "0"], ["--timeout", "inf"],
    ["--num_workers", "0,a"], ["--num_workers", "-1"], ["--train_batch", "x"], ["--sizes", "0x5"],
    ["--sizes", "big"], ["--text_dim", "0"], ["--repeats", "0"], ["--warmup", "-1"], ["--train_size", "100000"],
    ["--de_type", "snow"], ["--device", "tpu"], ["--impl", "magic"], ["--preset", "huge"],
    ["--threads", "-1"], ["--data_batches", "0"], ["--profile_steps", "0"], ["--max_pixels", "0"],
    ["--ckpt", README],
]

BLIND_BAD = [
    ["--size", "0"], ["--size", "16"], ["--size", "abc"], ["--per_set", "0"], ["--threads", "0"], ["--threads", "x"],
    ["--seed", "-1"], ["--json", "{tmp}"], ["--json", README + "/scores.json"], ["--real", "snow=photos"],
    ["--real", "derain"], ["--photos", "no/such/photos"],
]


# the word the line must hold where it is not the option's name
NAMED_BY = {"--instruction": "instruction"}


def one_error_line(capsys, rc: int, option: str) -> str:
    option = NAMED_BY.get(option, option)
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert rc == 2, captured
    assert len(lines) == 1 and lines[0].startswith("error: "), captured.err
    assert "Traceback" not in captured.err + captured.out
    assert option in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def photo(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("photo") / "a.png"
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(path)
    return path


@pytest.mark.parametrize("bad", TRAIN_BAD, ids=" ".join)
def test_train_py_refuses_each_bad_option_in_one_line(bad, tiny_layout, text_ckpt, tmp_path, capsys):
    base = ["--data_root", str(tiny_layout / "Train"), "--text_ckpt", str(text_ckpt), *TINY_NET,
            "--patch_size", "32", "--batch_size", "2", "--num_workers", "0", "--epochs", "1", "--max_steps", "1",
            "--ckpt_dir", str(tmp_path / "ckpt"), "--log_dir", str(tmp_path / "logs"), "--device", "cpu",
            "--no_progress", "--val_every", "0"]
    if bad[0] == "--heads":
        base = ["--preset", "demo"] + base[:base.index("--dim")] + base[base.index("--patch_size"):]
    one_error_line(capsys, train.main(base + bad), bad[0])
    assert not (tmp_path / "ckpt").exists()  # refused before any work


@pytest.mark.parametrize("bad", TEST_BAD, ids=" ".join)
def test_test_py_refuses_each_bad_option_in_one_line(bad, tiny_layout, tiny_ckpt, tmp_path, capsys):
    base = ["--ckpt", str(tiny_ckpt), "--test_root", str(tiny_layout / "test"), "--output_dir", str(tmp_path / "out"),
            "--no_progress", "--num_workers", "0", "--device", "cpu", "--mode", "derain"]
    one_error_line(capsys, test_script.main(base + bad), bad[0])
    assert not list((tmp_path / "out").rglob("results.*"))


@pytest.mark.parametrize("bad", DEMO_BAD, ids=" ".join)
def test_demo_py_refuses_each_bad_option_in_one_line(bad, photo, tiny_ckpt, tmp_path, capsys):
    base = ["--ckpt", str(tiny_ckpt), "--input", str(photo), "--output", str(tmp_path / "out"), "--no_progress",
            "--device", "cpu"]
    if bad[0] != "--instruction":
        base += ["--task", "denoise"]
    one_error_line(capsys, demo.main(base + bad), bad[0])
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("bad", BENCH_BAD, ids=" ".join)
def test_bench_py_refuses_each_bad_option_in_one_line(bad, tmp_path, capsys):
    base = ["--preset", "demo", "--sizes", "32", "--no_train", "--no_flops", "--repeats", "1", "--warmup", "0",
            "--out", str(tmp_path / "bench.json")]
    if bad[0] in ("--cache_gb", "--num_workers", "--de_type", "--data_batches", "--max_pixels"):
        (tmp_path / "Train/Denoise").mkdir(parents=True)
        base += ["--data_only", "--data_root", str(tmp_path / "Train")]
    one_error_line(capsys, bench.main(base + bad), bad[0])
    assert not (tmp_path / "bench.json").exists()


@pytest.mark.parametrize("bad", BLIND_BAD, ids=" ".join)
def test_blind_accuracy_refuses_each_bad_option_in_one_line(bad, photo, tiny_ckpt, tmp_path, capsys):
    from utils.eval import blind_accuracy

    base = ["--ckpt", str(tiny_ckpt), "--photos", str(photo.parent), "--crops"]
    bad = [b.replace("{tmp}", str(tmp_path)) for b in bad]
    one_error_line(capsys, blind_accuracy.main(base + bad), bad[0])
    assert list(tmp_path.iterdir()) == []  # nothing written


# a recipe file (--config) -> the word its error line must hold
CONFIG_BAD = [
    ("lrr: 1.0e-3\n", "did you mean 'lr'"), ("stage: all\n", "unknown key 'stage'"),
    ("patch_size: 100000\n", "patch_size"), ("lr: .nan\n", "lr"), ("lr: [1\n", "not valid YAML"),
    ("precision: fp8\n", "precision"), ("base: huge\n", "base 'huge'"), (None, "no such recipe file"),
]


@pytest.mark.parametrize("text, word", CONFIG_BAD, ids=[word for _, word in CONFIG_BAD])
def test_train_and_test_py_refuse_a_bad_recipe_file_in_one_line(text, word, tiny_layout, text_ckpt, tiny_ckpt,
                                                                tmp_path, capsys):
    recipe = tmp_path / "mine.yaml"
    if text is not None:
        recipe.write_text(text)
    base = ["--data_root", str(tiny_layout / "Train"), "--text_ckpt", str(text_ckpt), "--ckpt_dir",
            str(tmp_path / "ckpt"), "--log_dir", str(tmp_path / "logs"), "--device", "cpu", "--no_progress"]
    line = one_error_line(capsys, train.main(base + ["--config", str(recipe)]), word)
    assert str(recipe) in line
    assert not (tmp_path / "ckpt").exists()  # refused before any work
    base = ["--ckpt", str(tiny_ckpt), "--test_root", str(tiny_layout / "test"), "--output_dir", str(tmp_path / "out"),
            "--no_progress", "--device", "cpu", "--mode", "derain"]
    one_error_line(capsys, test_script.main(base + ["--config", str(recipe)]), word)
    assert not (tmp_path / "out").exists()


def test_an_undecodable_name_on_a_real_command_line_is_one_line(tiny_layout, text_ckpt, tmp_path):
    """Bytes that are not UTF-8 in argv (a mistyped terminal encoding) reach Python as surrogates."""
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    argv = [os.fsencode(sys.executable), b"train.py", b"--data_root", os.fsencode(tiny_layout / "Train"),
            b"--ckpt_dir", os.fsencode(tmp_path / "ckpt"), b"--name", b"run\xff\xfe", b"--device", b"cpu"]
    res = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, timeout=300)
    err = res.stderr.decode("utf-8", "replace")
    assert res.returncode == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "--name" in lines[0] and "UTF-8" in lines[0] and "Traceback" not in err
    assert not (tmp_path / "ckpt").exists()


def test_demo_max_memory_inf_on_a_real_command_line_is_one_line(photo, tiny_ckpt, tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    res = subprocess.run([sys.executable, "demo.py", "--ckpt", str(tiny_ckpt), "--input", str(photo), "--task",
                          "denoise", "--output", str(tmp_path / "out"), "--max_memory", "inf", "--no_progress"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 2, res.stderr
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "--max_memory" in lines[0] and "Traceback" not in res.stderr
