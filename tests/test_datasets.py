"""utils/data/layouts.py, train_set.py and utils/eval/benchmarks.py: pairing rules, list files, error messages, samples and test sets (in tmp_path)."""
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from utils.data.image_io import read_image, write_image
from utils.data.layouts import DEMO_MANIFEST, EXPECTED_TEST_LAYOUT, PAPER_REPEATS, find_train_pairs
from utils.data.train_set import TrainDataset
from utils.errors import UserError
from utils.eval.benchmarks import BenchmarkSet, find_test_sets
from utils.metrics import crop_to_multiple
from utils.tasks import DEGRADATIONS, sigma_of, task_of


def _img(seed: int, h: int = 40, w: int = 48) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _write(path, seed=0, h=40, w=48, img=None):
    write_image(path, _img(seed, h, w) if img is None else img)
    return path


def _derain(root, n=3, **kw):
    for i in range(1, n + 1):
        img = _img(i, **kw)
        _write(root / "Derain" / "rainy" / f"rain-{i}.png", img=img)
        _write(root / "Derain" / "gt" / f"norain-{i}.png", img=img)  # gt == input: crops must match


def _dehaze(root, ids=("0001", "0002"), variants=(("0.8", "0.04"), ("1", "0.2")), **kw):
    for k, image_id in enumerate(ids):
        img = _img(100 + k, **kw)
        _write(root / "Dehaze" / "original" / f"{image_id}.png", img=img)
        for a, b in variants:
            _write(root / "Dehaze" / "synthetic" / "part1" / f"{image_id}_{a}_{b}.png", img=img)


def _denoise(root, n=3, **kw):
    for i in range(n):
        _write(root / "Denoise" / f"img{i}.png", seed=i, **kw)


# --- names ----------------------------------------------------------------------------------------


def test_task_and_sigma_names():
    assert [task_of(d) for d in DEGRADATIONS] == ["denoise"] * 3 + ["derain", "dehaze"]
    assert [sigma_of(d) for d in DEGRADATIONS] == [15, 25, 50, None, None]
    with pytest.raises(UserError, match="unknown degradation type 'denoise'; choose from denoise_15"):
        task_of("denoise")


# --- pairing rules ------------------------------------------------------------------------------------


def test_denoise_images_found_recursively_any_case(tmp_path):
    d = tmp_path / "Denoise"
    for name in ("a.png", "sub/b.JPG", "sub/deep/c.Jpeg", "d.bmp", "e.TIF", "f.tiff"):
        _write(d / name)
    (d / "notes.txt").write_text("not an image")
    (d / ".hidden.png").write_bytes(b"x")
    pairs = find_train_pairs(tmp_path, "denoise_25")
    assert all(lq is None for lq, _ in pairs)
    assert sorted(p.relative_to(d).as_posix() for _, p in pairs) == sorted(
        ["a.png", "sub/b.JPG", "sub/deep/c.Jpeg", "d.bmp", "e.TIF", "f.tiff"])


def test_derain_rain_n_to_norain_n_in_natural_order(tmp_path):
    _derain(tmp_path, n=11)
    pairs = find_train_pairs(tmp_path, "derain")
    assert [lq.name for lq, _ in pairs][:3] == ["rain-1.png", "rain-2.png", "rain-3.png"]
    assert all(gt.name == "norain-" + lq.name[len("rain-"):] for lq, gt in pairs)
    assert pairs[-1][0].name == "rain-11.png"


def test_derain_same_name_pairs(tmp_path):
    for name in ("x.png", "y.jpg"):
        _write(tmp_path / "Derain" / "rainy" / name)
        _write(tmp_path / "Derain" / "gt" / name)
    pairs = find_train_pairs(tmp_path, "derain")
    assert [(lq.name, gt.name) for lq, gt in pairs] == [("x.png", "x.png"), ("y.jpg", "y.jpg")]


def test_dehaze_ots_naming_jpg_and_png(tmp_path):
    _write(tmp_path / "Dehaze" / "original" / "0025.jpg")
    _write(tmp_path / "Dehaze" / "original" / "0039.png")
    for name in ("part1/0025_0.8_0.04.jpg", "part1/0025_1_0.2.jpg", "part2/0039_0.9_0.1.jpg"):
        _write(tmp_path / "Dehaze" / "synthetic" / name)
    pairs = find_train_pairs(tmp_path, "dehaze")
    got = {lq.name: gt.name for lq, gt in pairs}
    assert got == {"0025_0.8_0.04.jpg": "0025.jpg", "0025_1_0.2.jpg": "0025.jpg", "0039_0.9_0.1.jpg": "0039.png"}


def test_dehaze_same_name_pairs(tmp_path):
    _write(tmp_path / "Dehaze" / "synthetic" / "scene.png")
    _write(tmp_path / "Dehaze" / "original" / "scene.png")
    assert [(a.name, b.name) for a, b in find_train_pairs(tmp_path, "dehaze")] == [("scene.png", "scene.png")]


# --- list files -----------------------------------------------------------------------------------


def test_list_files_restrict_each_task(tmp_path):
    _derain(tmp_path, n=3)
    _dehaze(tmp_path)
    _denoise(tmp_path, n=3)
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "derain.txt").write_text("# Rain100L subset\nrainy/rain-2.png\n\n")
    (lists / "dehaze.txt").write_text("synthetic/part1/0002_1_0.2.png\n")
    (lists / "denoise.txt").write_text("img1.png\n./img2.png\n")
    assert [lq.name for lq, _ in find_train_pairs(tmp_path, "derain", lists)] == ["rain-2.png"]
    assert [lq.name for lq, _ in find_train_pairs(tmp_path, "dehaze", lists)] == ["0002_1_0.2.png"]
    assert [gt.name for _, gt in find_train_pairs(tmp_path, "denoise_15", lists)] == ["img1.png", "img2.png"]


def test_official_list_names_and_missing_list_means_all(tmp_path):
    _derain(tmp_path, n=3)
    _dehaze(tmp_path)
    lists = tmp_path / "data_dir"
    (lists / "rainy").mkdir(parents=True)
    (lists / "rainy" / "rainTrain.txt").write_text("rainy/rain-1.png\nrainy/rain-3.png\n")
    assert [lq.name for lq, _ in find_train_pairs(tmp_path, "derain", lists)] == ["rain-1.png", "rain-3.png"]
    assert len(find_train_pairs(tmp_path, "dehaze", lists)) == 4  # no dehaze list: every image


def test_list_file_errors(tmp_path):
    _derain(tmp_path, n=2)
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "derain.txt").write_text("\n".join(f"rainy/rain-{i}.png" for i in range(1, 10)))
    with pytest.raises(UserError) as err:
        find_train_pairs(tmp_path, "derain", lists)
    msg = str(err.value)
    assert "derain.txt: 7 listed image(s) not found" in msg and "rainy/rain-3.png" in msg
    assert "rainy/rain-8.png" not in msg and "fix the list" in msg
    (lists / "derain.txt").write_text("# nothing\n")
    with pytest.raises(UserError, match="the list is empty"):
        find_train_pairs(tmp_path, "derain", lists)


# --- error messages ---------------------------------------------------------------------------------


def test_missing_task_folder(tmp_path):
    with pytest.raises(UserError) as err:
        find_train_pairs(tmp_path, "derain")
    assert f"{tmp_path / 'Derain'}: folder not found" in str(err.value)
    assert "Derain/rainy/rain-N.png" in str(err.value)
    (tmp_path / "Derain" / "rainy").mkdir(parents=True)
    with pytest.raises(UserError, match="gt: folder not found"):
        find_train_pairs(tmp_path, "derain")


def test_empty_folders(tmp_path):
    (tmp_path / "Denoise" / "sub").mkdir(parents=True)
    with pytest.raises(UserError, match="Denoise: no images .* found; put clean training images there"):
        find_train_pairs(tmp_path, "denoise_50")
    (tmp_path / "Dehaze" / "synthetic").mkdir(parents=True)
    (tmp_path / "Dehaze" / "original").mkdir(parents=True)
    with pytest.raises(UserError, match="synthetic: no images found"):
        find_train_pairs(tmp_path, "dehaze")


def test_unpaired_lists_first_five_and_count(tmp_path):
    _derain(tmp_path, n=2)
    for i in range(3, 10):
        _write(tmp_path / "Derain" / "rainy" / f"rain-{i}.png")
    with pytest.raises(UserError) as err:
        find_train_pairs(tmp_path, "derain")
    msg = str(err.value)
    assert "7 image(s) have no ground truth" in msg
    assert "rain-3.png, rain-4.png, rain-5.png, rain-6.png, rain-7.png, ..." in msg
    assert "rain-8.png" not in msg and "add the missing ground truths" in msg and "\n" not in msg


def test_unpaired_hazy_image(tmp_path):
    _dehaze(tmp_path, ids=("0001",))
    _write(tmp_path / "Dehaze" / "synthetic" / "part1" / "0099_0.8_0.1.png")
    with pytest.raises(UserError, match=r"1 image\(s\) have no ground truth .*part1/0099_0.8_0.1.png"):
        find_train_pairs(tmp_path, "dehaze")


def test_corrupt_image_names_its_path(tmp_path):
    _denoise(tmp_path, n=2, h=64, w=64)
    bad = tmp_path / "Denoise" / "broken.png"
    bad.write_bytes(b"garbage")
    with pytest.raises(UserError, match="broken.png: cannot read this image"):
        TrainDataset(tmp_path, ["denoise_15"], patch_size=32)
    data = TrainDataset(tmp_path, ["denoise_15"], patch_size=32, repeats={"denoise_15": 1}, check_sizes=False)
    index = [gt.name for _, gt in data.segments[0].pairs].index("broken.png")
    with pytest.raises(UserError, match="broken.png: cannot read this image"):
        data[index]


def test_size_mismatch_names_both_files(tmp_path):
    _write(tmp_path / "Derain" / "rainy" / "rain-1.png", h=40, w=48)
    _write(tmp_path / "Derain" / "gt" / "norain-1.png", h=40, w=50)
    with pytest.raises(UserError) as err:
        TrainDataset(tmp_path, ["derain"], patch_size=32)
    msg = str(err.value)
    assert "rain-1.png (40x48)" in msg and "norain-1.png (40x50)" in msg and "same size" in msg
    data = TrainDataset(tmp_path, ["derain"], patch_size=32, check_sizes=False)
    with pytest.raises(UserError, match="norain-1.png"):
        data[0]


def test_bad_options(tmp_path):
    _derain(tmp_path)
    with pytest.raises(UserError, match="no degradation types"):
        TrainDataset(tmp_path, [])
    with pytest.raises(UserError, match="repeated"):
        TrainDataset(tmp_path, ["derain", "derain"])
    with pytest.raises(UserError, match="repeat factor for derain is 0"):
        TrainDataset(tmp_path, ["derain"], repeats={"derain": 0})
    with pytest.raises(UserError, match="no instruction rows for task derain"):
        TrainDataset(tmp_path, ["derain"], instruction_rows={"denoise": [0]})


# --- samples ----------------------------------------------------------------------------------------


@pytest.fixture
def full_root(tmp_path):
    _denoise(tmp_path, n=3, h=64, w=80)
    _derain(tmp_path, n=4, h=64, w=80)
    _dehaze(tmp_path, h=64, w=80)
    return tmp_path


ROWS = {"denoise": [10, 11, 12], "derain": [20, 21], "dehaze": [30]}


def test_length_is_repeats_times_images(full_root):
    data = TrainDataset(full_root, patch_size=32, repeats={"derain": 5}, instruction_rows=ROWS)
    assert len(data) == 3 * 3 * PAPER_REPEATS["denoise_15"] + 4 * 5 + 4 * PAPER_REPEATS["dehaze"]
    assert data.counts()["derain"] == (4, 20)
    assert "derain: 4 images x5 = 20 samples" in data.summary()


def test_sample_dict_same_crop_and_instruction_rows(full_root):
    data = TrainDataset(full_root, patch_size=32, repeats={"derain": 2}, instruction_rows=ROWS)
    seen = set()
    for i in range(len(data)):
        s = data[(1, i)]
        assert set(s) == {"lq", "gt", "task", "instruction_idx"}
        assert s["lq"].shape == s["gt"].shape == (3, 32, 32) and s["lq"].dtype == torch.float32
        assert 0.0 <= float(s["lq"].min()) and float(s["lq"].max()) <= 1.0
        task = task_of(s["task"])
        assert s["instruction_idx"] in ROWS[task]
        if task == "denoise":
            assert not torch.equal(s["lq"], s["gt"])
        else:  # the fixtures store the same image as input and target: same crop and flip -> equal
            assert torch.equal(s["lq"], s["gt"])
        seen.add(s["task"])
    assert seen == set(DEGRADATIONS)


def test_noise_level_of_denoise_samples(full_root):
    data = TrainDataset(full_root, ["denoise_50"], patch_size=64)
    s = data[0]
    residual = (s["lq"] - s["gt"]).numpy() * 255
    assert 35 < residual.std() < 55  # sigma=50 minus clipping


def test_no_instruction_rows_gives_minus_one(full_root):
    data = TrainDataset(full_root, ["dehaze"], patch_size=32)
    assert data[0]["instruction_idx"] == -1


def test_keys_are_deterministic(full_root):
    a = TrainDataset(full_root, patch_size=32, instruction_rows=ROWS, seed=7)
    b = TrainDataset(full_root, patch_size=32, instruction_rows=ROWS, seed=7)
    c = TrainDataset(full_root, patch_size=32, instruction_rows=ROWS, seed=8)
    for i in (0, 5, len(a) - 1):
        sa, sb = a[(3, i)], b[(3, i)]
        assert torch.equal(sa["lq"], sb["lq"]) and torch.equal(sa["gt"], sb["gt"])
        assert sa["instruction_idx"] == sb["instruction_idx"]
    assert torch.equal(a[4]["lq"], a[(0, 4)]["lq"])
    assert any(not torch.equal(a[(0, i)]["lq"], a[(1, i)]["lq"]) for i in range(5))
    assert any(not torch.equal(a[(0, i)]["lq"], c[(0, i)]["lq"]) for i in range(5))


def test_channel_shuffle_permutes_input_and_target_alike(tmp_path):
    for i in range(1, 4):  # stored pairs whose input is the target's negative: a mix-up would show
        img = _img(i, 64, 80)
        _write(tmp_path / "Derain" / "rainy" / f"rain-{i}.png", img=255 - img)
        _write(tmp_path / "Derain" / "gt" / f"norain-{i}.png", img=img)
    _denoise(tmp_path, n=2, h=64, w=80)
    plain = TrainDataset(tmp_path, ["derain", "denoise_25"], patch_size=32, seed=3)
    shuffled = TrainDataset(tmp_path, ["derain", "denoise_25"], patch_size=32, seed=3, channel_shuffle=True)
    orders = set()
    for i in range(len(plain)):
        a, b = plain[(2, i)], shuffled[(2, i)]
        # same crop and flip, channels reordered: each shuffled channel is one of the plain ones
        order = tuple(next(c for c in range(3) if torch.equal(b["gt"][k], a["gt"][c])) for k in range(3))
        assert sorted(order) == [0, 1, 2]
        orders.add(order)
        if b["task"] == "derain":
            assert torch.allclose(b["lq"], 1.0 - b["gt"])  # the input kept its target's order
        else:
            assert not torch.equal(b["lq"], b["gt"])
    assert len(orders) > 1


def test_small_images_are_padded_with_one_warning(tmp_path):
    _write(tmp_path / "Denoise" / "big.png", h=64, w=64)
    _write(tmp_path / "Denoise" / "small1.png", h=20, w=70)
    _write(tmp_path / "Denoise" / "small2.png", h=30, w=12)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = TrainDataset(tmp_path, ["denoise_25"], patch_size=48)
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1 and "2 of 3 training images are smaller than the 48x48 patch" in messages[0]
    assert "small2.png" in messages[0] and data.num_small == 2
    assert all(data[i]["gt"].shape == (3, 48, 48) for i in range(len(data)))


# --- test sets --------------------------------------------------------------------------------------


def _test_root(tmp_path):
    root = tmp_path / "test"
    for i in range(3):
        _write(root / "denoise" / "cbsd68" / f"{i:04d}.png", seed=i, h=50, w=70)
    _write(root / "denoise" / "Kodak" / "k.png", h=33, w=33)
    for name in ("a.png", "b.png"):
        img = _img(len(name), 50, 70)
        _write(root / "derain" / "Rain100L" / "input" / name, img=img)
        _write(root / "derain" / "Rain100L" / "target" / name, img=img)
    _write(root / "dehaze" / "input" / "0001_0.8_0.2.jpg", h=50, w=70)
    _write(root / "dehaze" / "input" / "0002_1_0.04.jpg", h=50, w=70)
    _write(root / "dehaze" / "target" / "0001.png", h=50, w=70)
    _write(root / "dehaze" / "target" / "0002.png", h=50, w=70)
    return root


def test_find_test_sets_layout_and_missing_lines(tmp_path):
    root = _test_root(tmp_path)
    sets, missing = find_test_sets(root)
    assert [s.label for s in sets] == [
        "cbsd68 σ=15", "cbsd68 σ=25", "cbsd68 σ=50", "Kodak σ=15", "Kodak σ=25", "Kodak σ=50", "Rain100L", "SOTS"]
    assert missing == [f"skipped Urban100: {root / 'denoise' / 'Urban100'} not found"]
    sots = sets[-1]
    assert sots.task == "dehaze" and [(a.name, b.name) for a, b in sots.pairs] == [
        ("0001_0.8_0.2.jpg", "0001.png"), ("0002_1_0.04.jpg", "0002.png")]
    sets, missing = find_test_sets(root, mode="derain")
    assert [s.name for s in sets] == ["Rain100L"] and missing == []


def test_find_test_sets_when_nothing_is_there(tmp_path):
    sets, missing = find_test_sets(tmp_path / "nowhere")
    assert sets == [] and len(missing) == 4 and missing[0].startswith("skipped CBSD68:")
    demo_root = tmp_path / "demo" / "test"  # the bundled demo set: its sets are not the paper's
    demo_root.mkdir(parents=True)
    (demo_root.parent / DEMO_MANIFEST).write_text("{}")
    sets, missing = find_test_sets(demo_root, mode="dehaze")
    assert sets == [] and missing == [f"skipped dehaze: no test sets in {demo_root / 'dehaze'}"]
    assert "test/dehaze/{input,target}" in EXPECTED_TEST_LAYOUT
    with pytest.raises(UserError, match="unknown test mode 'blur'"):
        find_test_sets(tmp_path, mode="blur")


def test_test_set_errors(tmp_path):
    root = tmp_path / "test"
    _write(root / "derain" / "mine" / "input" / "a.png")
    (root / "derain" / "mine" / "target").mkdir(parents=True)
    with pytest.raises(UserError, match=r"1 image\(s\) have no ground truth"):
        find_test_sets(root, mode="derain")
    _write(root / "derain" / "mine" / "target" / "a.png", h=41)
    with pytest.raises(UserError, match="a.png \\(40x48\\) and .*a.png \\(41x48\\)"):
        find_test_sets(root, mode="derain")


def test_crop16_centre_crops_both(tmp_path):
    root = _test_root(tmp_path)
    (sots,) = [s for s in find_test_sets(root, mode="dehaze")[0]]
    item = sots[0]
    assert item["lq"].shape == item["gt"].shape == (3, 48, 64) and item["name"] == "0001_0.8_0.2"
    gt = read_image(sots.pairs[0][1])
    assert np.array_equal(gt[1:49, 3:67], crop_to_multiple(gt))
    assert torch.equal(item["gt"], torch.from_numpy(gt[1:49, 3:67].transpose(2, 0, 1) / np.float32(255)))
    (full,) = find_test_sets(root, mode="dehaze", crop16=False)[0]
    assert full[0]["gt"].shape == (3, 50, 70)


def _noisy_inputs(test_set, workers):
    loader = DataLoader(test_set, batch_size=1, num_workers=workers)
    return {batch["name"][0]: batch["lq"][0] for batch in loader}


def test_test_noise_is_identical_across_runs_workers_and_order(tmp_path):
    root = _test_root(tmp_path)
    sets, _ = find_test_sets(root, mode="denoise")
    cbsd25 = [s for s in sets if s.label == "cbsd68 σ=25"][0]
    a = _noisy_inputs(cbsd25, 0)
    b = _noisy_inputs(cbsd25, 2)
    again = _noisy_inputs(find_test_sets(root, mode="denoise")[0][1], 0)
    reversed_set = BenchmarkSet("denoise", "cbsd68", cbsd25.pairs[::-1], sigma=25)
    c = _noisy_inputs(reversed_set, 0)
    assert set(a) == {"0000", "0001", "0002"}
    for name in a:
        assert torch.equal(a[name], b[name]) and torch.equal(a[name], again[name]) and torch.equal(a[name], c[name])
    cbsd15 = [s for s in sets if s.label == "cbsd68 σ=15"][0]
    assert not torch.equal(cbsd15[0]["lq"], cbsd25[0]["lq"])


# --- real data at hand ------------------------------------------------------------------------------


def test_extra_denoising_folders_are_the_only_sets_without_a_root(tmp_path):
    _write(tmp_path / "Kodak24" / "kodim01.png", h=48, w=64)
    sets, notes = find_test_sets(None, "all", denoise_dirs=[tmp_path / "Kodak24"])
    assert [s.label for s in sets] == ["Kodak24 σ=15", "Kodak24 σ=25", "Kodak24 σ=50"] and notes == []


def test_shared_datasets_when_present():
    shared = Path(__file__).resolve().parents[2] / "shared" / "datasets"  # the project's own machines only
    if not (shared / "BSD400").is_dir():
        pytest.skip("../shared/datasets is not here")
    pairs = find_train_pairs("unused", "denoise_25", task_dir=shared / "BSD400")
    assert len(pairs) >= 1
    tests = [shared / n for n in ("Kodak24", "McMaster") if (shared / n).is_dir()]
    sets, _ = find_test_sets(None, mode="denoise", denoise_dirs=tests)
    assert {s.name for s in sets} >= {p.name for p in tests}


def test_rain_synthesised_on_the_fly_is_new_for_every_sample(full_root):
    data = TrainDataset(full_root, ["derain"], patch_size=32, repeats={"derain": 1}, synthetic=["derain"])
    first, again, other_epoch = data[(0, 0)], data[(0, 0)], data[(1, 0)]
    assert torch.equal(first["lq"], again["lq"])  # seeded by (seed, epoch, index)
    rain = first["lq"] - first["gt"]
    assert rain.min() >= -1 / 255 and rain.max() > 0.05  # screen blending only brightens (up to rounding)
    assert not torch.equal(first["lq"] - first["gt"], other_epoch["lq"] - other_epoch["gt"])
    with pytest.raises(UserError, match="cannot synthesise blur"):
        TrainDataset(full_root, ["dehaze"], synthetic=["blur"])


def test_haze_synthesised_on_the_fly_veils_the_crop(full_root):
    data = TrainDataset(full_root, ["dehaze"], patch_size=32, repeats={"dehaze": 1}, synthetic=["dehaze"])
    samples = [data[(0, i)] for i in range(len(data))] + [data[(1, 0)]]
    for sample in samples:  # I = J t + A (1 - t), A >= 0.8: everything moves towards a bright airlight
        lq, gt = sample["lq"], sample["gt"]
        assert lq.std() < gt.std() + 1e-3 and ((lq >= gt - 1 / 255) | (lq >= 0.8 * 0.8)).all()
    assert not torch.equal(samples[0]["lq"], samples[-1]["lq"])  # new (A, beta) every epoch


# --- lists and images the protocol cannot use ------------------------------------------------------


def test_a_list_folder_that_is_missing_or_holds_no_list_is_an_error(tmp_path):
    _derain(tmp_path, n=2)
    with pytest.raises(UserError, match=f"{tmp_path / 'no_lists'}: no such folder.*--list_dir"):
        TrainDataset(tmp_path, ["derain"], patch_size=16, list_dir=tmp_path / "no_lists")
    (tmp_path / "lists").mkdir()
    (tmp_path / "lists" / "notes.txt").write_text("not a list file\n")
    with pytest.raises(UserError) as err:
        TrainDataset(tmp_path, ["derain"], patch_size=16, list_dir=tmp_path / "lists")
    assert "derain.txt" in str(err.value) and "rainTrain.txt" in str(err.value)


def test_a_list_file_that_is_not_utf8_is_one_line(tmp_path):
    _derain(tmp_path, n=2)
    (tmp_path / "lists").mkdir()
    (tmp_path / "lists" / "derain.txt").write_bytes("rainy/rain-1.png\nrainy/pluie-\xe9t\xe9.png\n".encode("latin-1"))
    with pytest.raises(UserError) as err:
        find_train_pairs(tmp_path, "derain", tmp_path / "lists")
    assert len(str(err.value).splitlines()) == 1 and "UTF-8" in str(err.value)
    assert str(tmp_path / "lists" / "derain.txt") in str(err.value)


def test_test_images_too_small_for_the_protocol_name_the_image_and_the_minimum(tmp_path):
    root = tmp_path / "test"
    _write(root / "denoise" / "tiny" / "big.png", h=40, w=48)
    _write(root / "denoise" / "tiny" / "small.png", h=8, w=8)  # the 16-crop leaves 0x0
    with pytest.raises(UserError) as err:
        find_test_sets(root, mode="denoise")
    msg = str(err.value)
    assert str(root / "denoise" / "tiny" / "small.png") in msg and "8x8" in msg and "16x16" in msg
    assert "--no_crop16" in msg
    sets, _ = find_test_sets(root, mode="denoise", crop16=False)  # 8x8 fits SSIM's 7x7 window
    assert len(sets) == 3
    _write(root / "denoise" / "tiny" / "small.png", h=5, w=5)
    with pytest.raises(UserError, match=r"small.png \(5x5\).*7x7"):
        find_test_sets(root, mode="denoise", crop16=False)


def test_identity_pairs_share_and_rest_unchanged(full_root):
    """With an identity share, about that share of samples has the clean target as input, under its
    task and instruction; every other sample is exactly the one a run without it draws."""
    plain = TrainDataset(full_root, ["denoise_25"], patch_size=32, instruction_rows=ROWS, seed=5)
    ident = TrainDataset(full_root, ["denoise_25"], patch_size=32, instruction_rows=ROWS, seed=5,
                         identity_share=0.3)
    identity = 0
    keys = [(epoch, i) for epoch in range(6) for i in range(len(plain))]
    for key in keys:
        a, b = plain[key], ident[key]
        assert torch.equal(a["gt"], b["gt"]) and a["instruction_idx"] == b["instruction_idx"]
        assert b["task"] == "denoise_25" and b["instruction_idx"] in ROWS["denoise"]
        if torch.equal(b["lq"], b["gt"]):  # noise never leaves a crop as it was: an identity pair
            identity += 1
        else:
            assert torch.equal(a["lq"], b["lq"])
    assert 0.15 < identity / len(keys) < 0.45


def test_identity_share_out_of_range(full_root):
    with pytest.raises(UserError, match="identity share"):
        TrainDataset(full_root, ["derain"], patch_size=32, identity_share=1.0)
    with pytest.raises(UserError, match="identity share 1.0 of dehaze"):
        TrainDataset(full_root, ["derain"], patch_size=32, identity_share={"derain": 0.1, "dehaze": 1.0})


def test_each_task_has_its_own_identity_share(full_root):
    """A share given per task makes identity pairs of that task's samples only."""
    ident = TrainDataset(full_root, ["denoise_25", "derain"], patch_size=32, seed=5, synthetic=["derain"],
                         identity_share={"derain": 0.4})  # rain drawn anew never leaves a crop as it was
    counts = {"denoise_25": [0, 0], "derain": [0, 0]}  # [identity pairs, samples]
    for key in [(epoch, i) for epoch in range(6) for i in range(len(ident))]:
        b = ident[key]
        counts[b["task"]][0] += int(torch.equal(b["lq"], b["gt"]))
        counts[b["task"]][1] += 1
    assert counts["denoise_25"][0] == 0 and counts["denoise_25"][1] > 0
    assert 0.2 < counts["derain"][0] / counts["derain"][1] < 0.6
