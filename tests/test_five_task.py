"""The five-task setting's data and evaluation: GoPro and LOL-v1 layouts and their errors, --check_data
counts, the five_task preset, the five-task table, and the demo set's motion blur and low light."""
from __future__ import annotations

import importlib.util

import cv2
import numpy as np
import pytest

from options import train_options
from tests.conftest import ROOT, smooth_image
from utils.data import demo_data as demo
from utils.data.check import check_test_data, check_training_data
from utils.data.image_io import write_image
from utils.data.layouts import PAPER_REPEATS, find_train_pairs
from utils.data.train_set import TrainDataset
from utils.errors import UserError
from utils.eval.benchmarks import find_test_sets
from utils.eval.results import FIVE_TASK_PUBLISHED, markdown_tables
from utils.tasks import DEGRADATION_CHOICES, DEGRADATIONS, task_of

_spec = importlib.util.spec_from_file_location("test_script", ROOT / "test.py")
test_script = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(test_script)


def _pair(lq_path, gt_path, seed=0, h=40, w=48):
    img = smooth_image(np.random.default_rng(seed), h, w)
    write_image(gt_path, img)
    write_image(lq_path, img)


def _pairs(lq_dir, gt_dir, n=2, **size):
    """``n`` pairs ``0.png``, ``1.png``, ... in ``lq_dir`` and ``gt_dir`` (image i drawn with seed i)."""
    for i in range(n):
        _pair(lq_dir / f"{i}.png", gt_dir / f"{i}.png", seed=i, **size)


def _gopro(root, sequences=("GOPR0372_07_00", "GOPR0374_11_01"), frames=2, gamma=True):
    for s, seq in enumerate(sequences):
        for f in range(frames):
            name = f"{f:06d}.png"
            _pair(root / "Deblur" / seq / "blur" / name, root / "Deblur" / seq / "sharp" / name, seed=10 * s + f)
            if gamma:
                _pair(root / "Deblur" / seq / "blur_gamma" / name, root / "Deblur" / seq / "sharp" / name, seed=9)


def _png(rgb: np.ndarray) -> bytes:
    return cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))[1].tobytes()


def _copies(folder, n: int, data: bytes) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        (folder / f"{i}.png").write_bytes(data)


# --- task list and training layouts -----------------------------------------------------------------


def test_the_new_types_are_accepted_and_the_default_stays_the_papers():
    assert task_of("deblur") == "deblur" and task_of("lowlight") == "lowlight"
    assert DEGRADATIONS == ("denoise_15", "denoise_25", "denoise_50", "derain", "dehaze")
    assert train_options([]).de_type == list(DEGRADATIONS)
    assert train_options(["--de_type", "deblur", "lowlight"]).de_type == ["deblur", "lowlight"]
    with pytest.raises(UserError, match="unknown degradation type 'deblurr'"):
        task_of("deblurr")


def test_gopro_as_shipped_pairs_blur_with_sharp_and_ignores_blur_gamma_with_a_note(tmp_path, capsys):
    _gopro(tmp_path)
    pairs = find_train_pairs(tmp_path, "deblur")
    assert len(pairs) == 4
    assert all(lq.parent.name == "blur" and gt.parent.name == "sharp" and lq.name == gt.name
               and lq.parent.parent == gt.parent.parent for lq, gt in pairs)
    note = capsys.readouterr().out.strip().splitlines()
    assert len(note) == 1 and "blur_gamma" in note[0] and "2 GoPro sequences" in note[0]
    _gopro(tmp_path / "nogamma", gamma=False)
    find_train_pairs(tmp_path / "nogamma", "deblur")
    assert capsys.readouterr().out == ""  # no blur_gamma, no note


@pytest.mark.parametrize("task,names", [("deblur", ("input", "target")), ("deblur", ("blur", "sharp")),
                                        ("lowlight", ("low", "high")), ("lowlight", ("input", "target"))])
def test_flat_pairs_are_read(tmp_path, task, names):
    folder = tmp_path / ("Deblur" if task == "deblur" else "Lowlight")
    _pairs(folder / names[0], folder / names[1], n=3)
    pairs = find_train_pairs(tmp_path, task)
    assert [(lq.name, gt.name) for lq, gt in pairs] == [(f"{i}.png", f"{i}.png") for i in range(3)]
    data = TrainDataset(tmp_path, [task], patch_size=32, repeats={task: 2})
    assert len(data) == 6 and data[5]["lq"].shape == (3, 32, 32) and data[5]["task"] == task


@pytest.mark.parametrize("task", ["deblur", "lowlight"])
def test_two_layouts_in_one_training_folder_are_refused_in_one_line_by_training_and_check_data(tmp_path, task):
    """GoPro sequences (or low/ + high/) beside a flat input/ + target/: each holds 3 of the 6 pairs,
    and reading either alone would drop the other's without a word."""
    folder = tmp_path / ("Deblur" if task == "deblur" else "Lowlight")
    if task == "deblur":
        _gopro(tmp_path, sequences=("GOPR0372_07_00",), frames=3, gamma=False)
        other = "GoPro sequences (GOPR0372_07_00/blur/ + sharp/)"
    else:
        _pairs(folder / "low", folder / "high", n=3)
        other = "low/ + high/"
    _pairs(folder / "input", folder / "target", n=3)
    with pytest.raises(UserError) as e:
        find_train_pairs(tmp_path, task)
    message = str(e.value)
    assert "\n" not in message and message.startswith(str(folder)) and "input/ + target/" in message
    assert other in message and "keep one" in message
    with pytest.raises(UserError, match="two layouts"):
        TrainDataset(tmp_path, [task], patch_size=32)
    check = check_training_data(tmp_path, [task])[0]
    assert not check.ok and "two layouts" in check.line()


def test_a_missing_training_folder_is_one_line(tmp_path):
    with pytest.raises(UserError, match=r"Deblur: folder not found; expected Deblur/<sequence>/blur/\*\.png"):
        find_train_pairs(tmp_path, "deblur")
    (tmp_path / "Lowlight" / "dark").mkdir(parents=True)
    with pytest.raises(UserError, match=r"Lowlight: no paired folders found; expected Lowlight/low/\*\.png"):
        find_train_pairs(tmp_path, "lowlight")


def test_an_unpaired_training_image_is_named(tmp_path):
    _pairs(tmp_path / "Lowlight" / "low", tmp_path / "Lowlight" / "high")
    _pair(tmp_path / "Lowlight" / "low" / "778.png", tmp_path / "elsewhere.png")
    with pytest.raises(UserError, match=r"1 image\(s\) have no ground truth in .*high .*778\.png"):
        find_train_pairs(tmp_path, "lowlight")
    _gopro(tmp_path, sequences=("GOPR0372_07_00",))
    (tmp_path / "Deblur" / "GOPR0384_11_00" / "blur").mkdir(parents=True)  # a sequence without sharp/
    with pytest.raises(UserError, match=r"GOPR0384_11_00: a GoPro sequence folder without blur/ and sharp/"):
        find_train_pairs(tmp_path, "deblur")


# --- test layouts ---------------------------------------------------------------------------------


def _test_root(root):
    _pairs(root / "deblur" / "GoPro" / "input", root / "deblur" / "GoPro" / "target", h=32, w=32)
    _pairs(root / "lowlight" / "LOL" / "input", root / "lowlight" / "LOL" / "target", h=32, w=32)


def test_gopro_and_lol_test_sets_are_found_and_named(tmp_path):
    _test_root(tmp_path)
    sets, notes = find_test_sets(tmp_path, "all")
    names = {(s.task, s.name, len(s)) for s in sets}
    assert {("deblur", "GoPro", 2), ("lowlight", "LOL", 2)} <= names
    assert "skipped GoPro" not in " ".join(notes) and "skipped LOL" not in " ".join(notes)
    sets, _ = find_test_sets(tmp_path, "lowlight")
    assert [s.name for s in sets] == ["LOL"]


def test_a_three_task_test_root_reports_no_missing_five_task_set(tmp_path):
    (tmp_path / "derain").mkdir()
    _, notes = find_test_sets(tmp_path, "all")
    assert notes == ["skipped CBSD68: " + str(tmp_path / "denoise" / "CBSD68") + " not found",
                     "skipped Urban100: " + str(tmp_path / "denoise" / "Urban100") + " not found",
                     "skipped Rain100L: " + str(tmp_path / "derain" / "Rain100L") + " not found",
                     "skipped SOTS: " + str(tmp_path / "dehaze" / "{input,target}") + " not found"]
    (tmp_path / "deblur").mkdir()  # a five-task folder without its set is reported
    _, notes = find_test_sets(tmp_path, "all")
    assert notes[-1] == f"skipped GoPro: {tmp_path / 'deblur' / 'GoPro'} not found"


def test_an_unpaired_test_image_is_named(tmp_path):
    _test_root(tmp_path)
    _pair(tmp_path / "deblur" / "GoPro" / "input" / "9.png", tmp_path / "x.png", h=32, w=32)
    with pytest.raises(UserError, match=r"GoPro/input: 1 image\(s\) have no ground truth .*9\.png"):
        find_test_sets(tmp_path, "deblur")
    (tmp_path / "lowlight" / "LOL" / "target").rename(tmp_path / "lowlight" / "LOL" / "gt")
    with pytest.raises(UserError, match=r"LOL: expected input/ and target/ folders"):
        find_test_sets(tmp_path, "lowlight")


def test_lols_low_and_high_folders_are_accepted_at_test_time(tmp_path):
    _pairs(tmp_path / "lowlight" / "LOL" / "low", tmp_path / "lowlight" / "LOL" / "high", h=32, w=32)
    sets, _ = find_test_sets(tmp_path, "lowlight")
    assert [(s.name, len(s), s.paths) for s in sets] == [("LOL", 2, ["0.png", "1.png"])]


# --- --check_data ----------------------------------------------------------------------------------


def test_check_data_counts_gopro_and_lol_against_their_published_sizes(tmp_path, capsys):
    data = _png(smooth_image(np.random.default_rng(0), 16, 16))
    for seq, n in (("GOPR0372_07_00", 2000), ("GOPR0374_11_01", 103)):  # 2,103 pairs in two sequences
        for sub in ("blur", "sharp", "blur_gamma"):
            _copies(tmp_path / "Train" / "Deblur" / seq / sub, n, data)
    for sub in ("low", "high"):
        _copies(tmp_path / "Train" / "Lowlight" / sub, 484, data)  # one short of 485
    lines = [c.line() for c in check_training_data(tmp_path / "Train", ["deblur", "lowlight"])]
    assert lines[0].endswith("found 2,103 pairs, expected 2,103: ok")
    assert "found 484 pairs, expected 485: fewer pairs than published" in lines[1]
    for sub in ("input", "target"):
        _copies(tmp_path / "test" / "deblur" / "GoPro" / sub, 1111, data)
        _copies(tmp_path / "test" / "lowlight" / "LOL" / sub, 15 if sub == "input" else 14, data)
    lines = [c.line() for c in check_test_data(tmp_path / "test", "all") if c.name in ("GoPro", "LOL")]
    assert lines[0].endswith("found 1,111 pairs, expected 1,111: ok")
    assert "15 inputs but 14 targets: a pair is missing its other half" in lines[1]
    rc = test_script.main(["--test_root", str(tmp_path / "test"), "--mode", "deblur", "--check_data"])
    assert rc == 0 and "GoPro" in capsys.readouterr().out


def test_check_data_of_a_three_task_root_does_not_ask_for_gopro(tmp_path):
    assert {c.name for c in check_test_data(tmp_path, "all")} == {"CBSD68", "Urban100", "Rain100L", "SOTS outdoor"}


# --- preset and table ------------------------------------------------------------------------------


def test_the_five_task_preset_sets_the_peers_recipe():
    args = train_options(["--preset", "five_task"])
    assert args.de_type == list(DEGRADATION_CHOICES)
    repeats = {**PAPER_REPEATS, **dict(args.repeat)}
    assert {k: repeats[k] for k in DEGRADATION_CHOICES} == {
        "denoise_15": 3, "denoise_25": 3, "denoise_50": 3, "derain": 120, "dehaze": 1, "deblur": 5, "lowlight": 20}
    assert (args.patch_size, args.batch_size, args.lr, args.epochs, args.warmup_epochs, args.loss) == \
        (128, 8, 2e-4, 150, 15, "l1")
    assert train_options(["--preset", "five_task", "--patch_size", "64"]).patch_size == 64  # flags win


def test_the_five_task_demo_trains_every_type_from_its_own_set_and_reads_all_five_in_images():
    from options import test_options

    args = train_options(["--preset", "demo_five"])
    assert args.de_type == list(DEGRADATION_CHOICES) and set(dict(args.repeat)) == set(DEGRADATION_CHOICES)
    assert args.data_root == "data/demo_five/Train" and test_options(["--preset", "demo_five"]).test_root == \
        "data/demo_five/test"
    assert args.classifier_steps == train_options(["--preset", "demo"]).classifier_steps == 400
    assert args.text_cond != "none"
    assert train_options(["--preset", "demo"]).de_type == list(DEGRADATIONS)  # make demo: the paper's three


def _summary(task, name, sigma=None, psnr=30.0, input_psnr=20.0):
    label = f"{name} σ={sigma}" if sigma else name
    return dict(label=label, task=task, name=name, sigma=sigma, n=1, psnr=psnr, ssim=0.9,
                input_psnr=input_psnr, input_ssim=0.5)


def test_the_five_task_table_shows_the_published_numbers_only_beside_the_real_sets():
    real = [_summary("dehaze", "SOTS"), _summary("derain", "Rain100L"), _summary("denoise", "CBSD68", 25),
            _summary("deblur", "GoPro", psnr=28.0), _summary("lowlight", "LOL", psnr=22.0)]
    table = markdown_tables(real)
    assert "| SOTS | Rain100L | BSD68 σ=25 | GoPro | LOL-v1 | Average |" in table
    for name in FIVE_TASK_PUBLISHED:
        assert f"| {name} (published) |" in table
    assert "| MoCE-IR (published) | 30.48 / 0.974 | 38.04 / 0.982 | 31.34 / 0.887 | 30.05 / 0.899 | 23.00 / 0.852 " \
           "| 30.58 / 0.919 |" in table
    assert "| ours | 30.00 / 0.900 | 30.00 / 0.900 | 30.00 / 0.900 | 28.00 / 0.900 | 22.00 / 0.900 " \
           "| 28.00 / 0.900 |" in table
    demo_sets = [_summary(task, "demo", sigma) for task, sigma in
                 (("dehaze", None), ("derain", None), ("denoise", 15), ("denoise", 25), ("deblur", None),
                  ("lowlight", None))]
    table = markdown_tables(demo_sets)
    assert "(published)" not in table and "31.05" not in table and "not comparable" in table
    assert "| degraded input | 20.00 / 0.500 |" in table and "demo σ=25 (denoise)" in table
    three = markdown_tables(real[:3])
    assert "GoPro" not in three and "(published)" not in three  # no five-task table without its new tasks


def test_each_published_average_is_the_mean_of_its_five_sets():
    for name, values in FIVE_TASK_PUBLISHED.items():
        psnr = sum(v[0] for v in values[:5]) / 5
        assert abs(psnr - values[5][0]) < 0.006, name


# --- demo data --------------------------------------------------------------------------------------


def test_synthetic_blur_and_low_light_are_calibrated_to_gopro_and_lol():
    stats = demo.measure_five_task_calibration(draws=1)
    assert abs(stats["blur"]["psnr"] - 25.6) < 1.0  # GoPro test's blurred input: 25.6 dB
    assert abs(stats["lowlight"]["psnr"] - 7.8) < 1.0  # LOL-v1 eval15's low-light input: 7.77 dB
    assert 0.05 < stats["lowlight"]["ssim"] < 0.3  # LOL's: about 0.19


@pytest.fixture(scope="module")
def five_set(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo5") / "demo"
    demo.make_demo(out, seed=0, small=True, five_task=True)
    return out


def test_the_five_task_demo_set_is_deterministic_and_read_by_the_data_code(five_set, tmp_path):
    demo.make_demo(tmp_path / "again", seed=0, small=True, five_task=True)
    demo.make_demo(tmp_path / "other", seed=1, small=True, five_task=True)
    assert demo.tree_digest(tmp_path / "again") == demo.tree_digest(five_set)
    assert demo.tree_digest(tmp_path / "other") != demo.tree_digest(five_set)
    assert len(find_train_pairs(five_set / "Train", "deblur")) == len(find_train_pairs(five_set / "Train", "lowlight"))
    sets, notes = find_test_sets(five_set / "test")
    assert notes == [] and {s.task for s in sets} == {"denoise", "derain", "dehaze", "deblur", "lowlight", "composite"}
    assert {s.name for s in sets} == {"demo", "composite denoise+derain"}


def test_the_five_task_option_leaves_the_three_task_files_as_they_are(five_set, tmp_path):
    three = tmp_path / "three"
    demo.make_demo(three, seed=0, small=True)
    manifest = (three / demo.MANIFEST).read_text()
    assert "five_task" not in manifest
    for path in sorted(p for p in three.rglob("*") if p.is_file() and p.name != demo.MANIFEST):
        assert (five_set / path.relative_to(three)).read_bytes() == path.read_bytes(), path
    built, _ = demo.make_demo(three, seed=0, small=True)
    assert not built  # up to date: the three-task manifest is read as before
    built, _ = demo.make_demo(three, seed=0, small=True, five_task=True)
    assert built and (three / "Train" / "Lowlight").is_dir()


# --- the degradation classifier over five tasks -------------------------------------------------------

def test_every_task_has_a_place_in_the_physical_order_and_a_synthesiser():
    from utils.data.classifier_samples import DegradationRanges, clean_source, degrade
    from utils.tasks import PHYSICAL_ORDER, TASKS

    assert sorted(PHYSICAL_ORDER) == sorted(TASKS)
    src = clean_source(smooth_image(np.random.default_rng(0), 64, 64))
    for task in TASKS:
        out, _ = degrade(src.image, src.depth, (task,), np.random.default_rng(1), DegradationRanges())
        assert out.shape == src.image.shape and out.dtype == np.uint8
        assert not np.array_equal(out, src.image), task


def test_blur_and_darkness_samples_are_blurred_and_dark_with_what_was_drawn():
    from utils.data.classifier_samples import DegradationRanges, clean_source, degrade
    from utils.data.degradations import BLUR_EXTENT

    rng = np.random.default_rng(2)
    img = np.clip(smooth_image(rng, 96, 96).astype(np.int16) + rng.integers(-40, 41, (96, 96, 3)), 0, 255)
    src = clean_source(img.astype(np.uint8))
    blurred, params = degrade(src.image, src.depth, ("deblur",), np.random.default_rng(3), DegradationRanges())
    detail = [np.abs(np.diff(a.astype(np.float32), axis=1)).mean() for a in (src.image, blurred)]
    assert detail[1] < 0.5 * detail[0] and BLUR_EXTENT[0] <= params["blur_extent"] <= BLUR_EXTENT[1]
    dark, params = degrade(src.image, src.depth, ("lowlight",), np.random.default_rng(3), DegradationRanges())
    assert dark.mean() < 0.25 * src.image.mean() and 0.004 <= params["exposure"] <= 0.015


def test_five_labels_give_every_set_of_up_to_three_and_a_batch_of_the_same_cost():
    from utils.data.classifier_samples import DegradationRanges, addable, all_label_sets, clean_source, training_batch
    from utils.tasks import PAPER_TASKS, TASKS
    from utils.train.classifier import ClassifierRecipe

    sets = all_label_sets(TASKS)
    assert len(sets) == 26 and sets[0] == () and max(map(len, sets)) == 3 and len(set(sets)) == 26
    assert len(all_label_sets(PAPER_TASKS)) == 8  # the three-task classifier's sets, as before
    assert addable(("deblur",), TASKS) == ("denoise", "lowlight")  # no rain or haze in front of a blurred shot
    assert ClassifierRecipe(labels=PAPER_TASKS).clean_crops() == 8 and ClassifierRecipe(labels=TASKS).clean_crops() == 2
    rng = np.random.default_rng(0)
    srcs = [clean_source(smooth_image(rng, 48, 56)) for _ in range(2)]
    x, y, _ = training_batch(srcs, [], TASKS, rng, 2, 0, 32, DegradationRanges(), None)
    assert x.shape == (52, 32, 32, 3) and y.shape == (52, 5)
    assert sorted(map(tuple, y.tolist())) == sorted(tuple(float(t in s) for t in TASKS) for s in sets for _ in range(2))


def test_clean_and_single_degradation_samples_weigh_half_the_classifier_loss(monkeypatch):
    import torch

    import utils.train.classifier as classifier
    from utils.data.classifier_samples import all_label_sets, clean_source
    from utils.tasks import PAPER_TASKS, TASKS

    for labels in (PAPER_TASKS, TASKS[:4], TASKS):
        sets = all_label_sets(labels)
        few, w = sum(len(s) <= 1 for s in sets), classifier.single_weight(labels)
        assert few * w / (few * w + len(sets) - few) == pytest.approx(0.5)
    assert classifier.single_weight(PAPER_TASKS) == 1.0  # the three-task classifier trains as it always did
    assert classifier.single_weight(TASKS) == pytest.approx(20 / 6)
    assert classifier.single_weight(("denoise", "derain")) == 1.0  # never below 1

    rng = np.random.default_rng(0)
    srcs = [clean_source(smooth_image(rng, 48, 56)) for _ in range(2)]

    def trained(labels, unweighted: bool) -> dict:
        if unweighted:
            monkeypatch.setattr(classifier, "single_weight", lambda labels: 1.0)
        recipe = classifier.ClassifierRecipe(labels=labels, steps=2, crops=1, degraded_crops=0, size=32, width=4,
                                             stages=2)
        net, measured = classifier.train_classifier(srcs, [], recipe, log=lambda _: None)
        monkeypatch.undo()
        return net.state_dict(), measured["single_weight"]

    (five, weight), (five_flat, _) = trained(TASKS, False), trained(TASKS, True)
    assert weight == pytest.approx(20 / 6)  # recorded with the classifier
    assert not all(torch.equal(five[k], five_flat[k]) for k in five)  # the weight is used ...
    (three, _), (three_flat, _) = trained(PAPER_TASKS, False), trained(PAPER_TASKS, True)
    assert all(torch.equal(three[k], three_flat[k]) for k in three)  # ... and changes nothing for three tasks


def test_a_five_task_run_stores_a_classifier_of_the_five_tasks_fed_by_the_real_blur_and_dark_pairs(
        five_set, tmp_path, text_ckpt):
    import train
    from tests.conftest import TINY_NET
    from utils.checkpoint import load_checkpoint, load_classifier

    args = ["--data_root", str(five_set / "Train"), "--text_ckpt", str(text_ckpt), "--ckpt_dir", str(tmp_path / "c"),
            "--log_dir", str(tmp_path / "l"), "--patch_size", "32", "--batch_size", "2", "--num_workers", "0",
            "--device", "cpu", "--no_progress", "--val_every", "0", *TINY_NET, "--epochs", "1", "--de_type",
            *DEGRADATION_CHOICES, "--repeat", *(f"{d}=1" for d in DEGRADATION_CHOICES), "--max_steps", "1",
            "--name", "five"]
    assert train.main(args) == 0
    path = tmp_path / "c/five/last.pt"
    assert train.main(["--stage", "classifier", "--resume", str(path), "--classifier_steps", "2",
                       *args[:-4]]) == 0
    record = load_checkpoint(path)["classifier"]
    assert load_classifier(load_checkpoint(path), path).labels == ("denoise", "derain", "dehaze", "deblur", "lowlight")
    assert record["recipe"]["crops"] == 2 and record["info"]["degraded_images"] > 0
    from utils.data.classifier_samples import find_sources

    _, degraded = find_sources(five_set / "Train", DEGRADATION_CHOICES, 64)
    assert {s.present for s in degraded} == {("derain",), ("dehaze",), ("deblur",), ("lowlight",)}


def test_blind_accuracy_counts_a_reading_of_more_than_three_degradations_as_other():
    from utils.data.classifier_samples import all_label_sets
    from utils.eval.blind_accuracy import OTHER, report, scores
    from utils.tasks import TASKS

    samples = [{"set": "clean", "target": np.zeros(5, bool)}, {"set": "deblur", "target": np.eye(5, dtype=bool)[3]}]
    prob = np.array([[0.9, 0.9, 0.9, 0.9, 0.1], [0.1, 0.1, 0.1, 0.9, 0.1]])
    result = scores(prob, samples, TASKS)
    assert result["confusion"]["clean"][OTHER] == 1 and result["confusion"]["deblur"]["deblur"] == 1
    assert len(result["confusion"]) == len(all_label_sets(TASKS)) and result["exact"] == 0.5
    text = report(result, "t")
    assert f"then {OTHER}" in text and text.splitlines()[5].rstrip().endswith("1")  # row 1: clean, read as other
    assert OTHER not in scores(prob[1:], samples[1:], TASKS)["confusion"]["clean"]  # no column when not needed


def test_a_five_task_set_built_by_an_earlier_generator_is_rebuilt(five_set, tmp_path):
    import json
    import shutil

    old = tmp_path / "old"
    shutil.copytree(five_set, old)
    manifest = json.loads((old / demo.MANIFEST).read_text())
    assert manifest.pop("five_task_version") == demo.FIVE_TASK_VERSION
    (old / demo.MANIFEST).write_text(json.dumps(manifest))  # as the generator wrote it before the blur changed
    built, _ = demo.make_demo(old, seed=0, small=True, five_task=True)
    assert built and demo.tree_digest(old) == demo.tree_digest(five_set)
    assert not demo.make_demo(old, seed=0, small=True, five_task=True)[0]  # and then it is up to date
