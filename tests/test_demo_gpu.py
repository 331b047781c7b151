"""The GPU demo's preset and its data options: the paper's network for a 10-minute budget, denoising
photos from --denoise_root, extra clean test folders from test.py --denoise_dirs."""
from __future__ import annotations

import pytest

import options
from net.model import ModelConfig
from options import check_test_paths, check_train_paths, train_options
from utils.errors import UserError
from utils.train.inputs import data_paths


def test_the_gpu_demo_trains_the_paper_network_for_ten_minutes_on_the_demo_data():
    args = train_options(["--preset", "demo_gpu"])
    paper = ModelConfig()
    assert (args.dim, tuple(args.num_blocks), tuple(args.heads)) == (paper.dim, paper.num_blocks, paper.heads)
    assert args.time_budget == 10.0 and args.data_root == "data/demo/Train"
    assert data_paths(args) == ("data/demo/Train", {})
    assert train_options(["--preset", "demo"]).time_budget is None  # the CPU demo is unchanged


def test_denoise_root_replaces_the_denoising_folder(tmp_path):
    val = tmp_path / "val"
    val.mkdir()  # the preset's data/demo/test need not exist here: a clean clone has not built it
    args = train_options(["--preset", "demo_gpu", "--denoise_root", str(tmp_path), "--val_root", str(val)])
    check_train_paths(args)
    assert data_paths(args) == ("data/demo/Train", {"denoise": str(tmp_path)})


def test_missing_denoise_folders_are_one_line(tmp_path):
    with pytest.raises(UserError, match="--denoise_root .*no such folder"):
        check_train_paths(train_options(["--denoise_root", str(tmp_path / "BSD400")]))
    with pytest.raises(UserError, match="--denoise_dirs .*no such folder"):
        check_test_paths(options.test_options(["--denoise_dirs", str(tmp_path), str(tmp_path / "Kodak24")]))


def test_test_py_scores_extra_clean_folders_at_three_sigmas(tiny_layout, tiny_ckpt, tmp_path, capsys):
    import test

    extra = tiny_layout / "test/denoise/CBSD68"
    assert test.main(["--ckpt", str(tiny_ckpt), "--test_root", str(tiny_layout / "test"), "--mode", "denoise",
                      "--denoise_dirs", str(extra), "--device", "cpu", "--output_dir", str(tmp_path), "--no_progress"]) == 0
    out = capsys.readouterr().out
    assert out.count("CBSD68 σ=25: PSNR") == 2  # the layout's own set and the extra folder
