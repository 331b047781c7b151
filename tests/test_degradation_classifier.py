"""The degradation classifier of the blind route: the network, its samples, its training, its place in
the checkpoint and train.py's --stage classifier."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY_NET, smooth_image, write, write_dehaze_pair, write_derain_pair

import train
from net.degradation_classifier import (
    GLOBAL_SIDE,
    MAX_CROPS,
    MIN_SIDE,
    TRAINING_CROP,
    DegradationClassifier,
    crop_boxes,
    predict_degradations,
    present,
)
from utils.checkpoint import load_checkpoint, load_classifier, save_checkpoint
from utils.data.classifier_samples import (
    DegradationRanges,
    addable,
    clean_source,
    training_batch,
)
from utils.data.degradations import add_gaussian_noise
from utils.errors import UserError
from utils.train.classifier import ClassifierRecipe, classifier_record, train_classifier

TINY_RECIPE = dict(steps=3, crops=2, degraded_crops=1, size=32, width=4, stages=2)


def sources(n: int = 3, side: int = 48, seed: int = 0) -> list:
    rng = np.random.default_rng(seed)
    return [clean_source(smooth_image(rng, side, side + 8), f"s{i}") for i in range(n)]


def test_every_parameter_gets_a_gradient():
    torch.manual_seed(0)
    net = DegradationClassifier(width=4, stages=2).train()
    logits, dense = net.forward_dense(torch.rand(4, 3, 40, 48))
    (logits.sum() + dense.sum()).backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []
    assert logits.shape == (4, 3) and dense.shape == (4, 1, 10, 12)


@pytest.mark.parametrize("hw", [(37, 200), (1000, 900), (32, 32), (129, 4000)])
def test_any_size_gives_every_label_a_probability_from_a_bounded_number_of_crops(hw):
    torch.manual_seed(0)
    net = DegradationClassifier(width=4, stages=2).eval()
    seen = []
    net.register_forward_hook(lambda module, inputs, output: seen.append(inputs[0].shape))
    image = np.random.default_rng(0).integers(0, 256, (*hw, 3), dtype=np.uint8)
    prob = predict_degradations(net, image)
    assert set(prob) == {"denoise", "derain", "dehaze"}
    assert all(0.0 <= p <= 1.0 for p in prob.values())
    assert len(seen) == 2 and 1 <= seen[0][0] <= MAX_CROPS  # the native crops, then the whole image shrunk
    assert seen[0][2:] == (min(hw[0], net.crop), min(hw[1], net.crop))
    assert seen[1][0] == 1 and min(seen[1][2:]) == min(*hw, GLOBAL_SIDE) and max(seen[1][2:]) <= 4 * GLOBAL_SIDE


def test_crops_cover_a_large_image_edge_to_edge_and_stay_bounded():
    boxes = crop_boxes(5000, 7000)
    assert len(boxes) == MAX_CROPS
    assert min(y for y, _, _, _ in boxes) == 0 and max(y + h for y, _, h, _ in boxes) == 5000
    assert min(x for _, x, _, _ in boxes) == 0 and max(x + w for _, x, _, w in boxes) == 7000
    assert len(crop_boxes(256, 256, 128)) == 4  # a small image is tiled, not over-read


def test_an_image_too_small_to_classify_is_one_line_naming_the_size_and_the_minimum():
    net = DegradationClassifier(width=4, stages=2)
    with pytest.raises(UserError) as e:
        predict_degradations(net, np.zeros((31, 200, 3), np.uint8), what="photo.png")
    text = str(e.value)
    assert "\n" not in text and "photo.png" in text and "200x31" in text and f"{MIN_SIDE}x{MIN_SIDE}" in text


def test_composite_samples_follow_the_physical_order():
    assert addable((), ("denoise", "derain", "dehaze")) == ("denoise", "derain", "dehaze")
    assert addable(("derain",), ("denoise", "derain", "dehaze")) == ("denoise",)  # no haze behind real rain
    assert addable(("dehaze",), ("denoise", "derain", "dehaze")) == ("denoise", "derain")
    rng = np.random.default_rng(0)
    x, y, maps = training_batch(sources(), [], ("denoise", "derain", "dehaze"), rng, 2, 0, 32,
                                DegradationRanges(), None, maps=("derain",))
    assert x.shape == (16, 32, 32, 3) and y.shape == (16, 3) and maps.shape == (16, 1, 32, 32)
    assert sorted(map(tuple, y.tolist())) == sorted(map(tuple, np.tile(np.array(
        [[a, b, c] for a in (0, 1) for b in (0, 1) for c in (0, 1)], np.float32), (2, 1)).tolist()))
    assert (maps[y[:, 1] == 0] == 0).all() and (maps[y[:, 1] == 1] > 0).any()


def test_training_is_deterministic_given_a_seed_and_leaves_the_callers_rng_alone():
    torch.manual_seed(123)
    before = torch.get_rng_state()
    a, _ = train_classifier(sources(), [], ClassifierRecipe(**TINY_RECIPE, seed=5), log=lambda _: None)
    assert torch.equal(torch.get_rng_state(), before)
    b, _ = train_classifier(sources(), [], ClassifierRecipe(**TINY_RECIPE, seed=5), log=lambda _: None)
    c, _ = train_classifier(sources(), [], ClassifierRecipe(**TINY_RECIPE, seed=6), log=lambda _: None)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


def test_a_classifier_trained_on_toy_images_separates_heavy_noise_from_clean():
    recipe = ClassifierRecipe(labels=("denoise",), steps=60, crops=8, degraded_crops=0, size=32, width=4, stages=2)
    net, _ = train_classifier(sources(6, 64), [], recipe, log=lambda _: None)
    rng = np.random.default_rng(99)
    held_out = [smooth_image(rng, 64, 80) for _ in range(4)]
    clean = [predict_degradations(net, im)["denoise"] for im in held_out]
    noisy = [predict_degradations(net, add_gaussian_noise(im, 50, rng))["denoise"] for im in held_out]
    assert max(clean) < 0.5 < min(noisy), (clean, noisy)
    assert present({"denoise": noisy[0]}) == ("denoise",) and present({"denoise": clean[0]}) == ()


def test_unsure_readings_are_left_out_only_beside_a_clear_one():
    from net.degradation_classifier import CLEAR, THRESHOLD, UNSURE_MARGIN, shown

    just = THRESHOLD + UNSURE_MARGIN / 2  # read, but inside the unsure band
    assert shown({"denoise": CLEAR, "derain": just, "dehaze": 0.1}) == ("denoise",)
    assert shown({"denoise": CLEAR, "derain": (THRESHOLD + UNSURE_MARGIN + CLEAR) / 2, "dehaze": just}) == ("denoise", "derain")
    assert shown({"denoise": CLEAR - 0.01, "derain": just, "dehaze": 0.1}) == ("denoise", "derain")  # none clear
    assert shown({"denoise": 0.1, "derain": just, "dehaze": just}) == ("derain", "dehaze")  # only unsure ones
    assert shown({"denoise": 0.1, "derain": 0.2, "dehaze": 0.3}) == ()


def test_a_checkpoint_without_a_classifier_loads_as_none_and_a_malformed_one_is_one_line(tiny_ckpt):
    ckpt = load_checkpoint(tiny_ckpt)
    assert load_classifier(ckpt) is None
    for bad in ({"labels": ["denoise"]}, {"labels": ["denoise"], "config": {"width": "x"}, "state": {}},
                {"labels": ["denoise"], "config": {}, "state": {"nonsense": torch.zeros(1)}}, "text"):
        with pytest.raises(UserError) as e:
            load_classifier({**ckpt, "classifier": bad}, tiny_ckpt)
        assert "\n" not in str(e.value) and str(tiny_ckpt) in str(e.value) and "--stage classifier" in str(e.value)


def test_a_stored_classifier_round_trips_through_the_checkpoint(tiny_ckpt, tmp_path):
    net, measured = train_classifier(sources(), [], ClassifierRecipe(**TINY_RECIPE), log=lambda _: None)
    path = tmp_path / "with.pt"
    save_checkpoint(path, {**load_checkpoint(tiny_ckpt), "classifier": classifier_record(net, ClassifierRecipe(), measured)})
    loaded = load_classifier(load_checkpoint(path), path)
    image = smooth_image(np.random.default_rng(1), 70, 90)
    assert loaded.labels == net.labels and predict_degradations(loaded, image) == predict_degradations(net, image)


@pytest.fixture(scope="module")
def layout_72(tmp_path_factory) -> Path:
    """The paper's training layout with images large enough for the classifier's 64-px crops."""
    root = tmp_path_factory.mktemp("layout72") / "Train"
    rng = np.random.default_rng(0)
    for i in range(3):
        write(root / "Denoise" / f"{i}.png", smooth_image(rng, 72, 80))
        gt = smooth_image(rng, 72, 72)
        write_derain_pair(root, i, gt)
        write_dehaze_pair(root, i, gt)
    return root


def stage_args(data_root: Path, text_ckpt: Path, tmp_path: Path) -> list[str]:
    return ["--data_root", str(data_root), "--text_ckpt", str(text_ckpt), "--ckpt_dir", str(tmp_path / "ckpt"),
            "--log_dir", str(tmp_path / "logs"), "--patch_size", "32", "--batch_size", "2", "--num_workers", "0",
            "--device", "cpu", "--no_progress", "--val_every", "0", *TINY_NET]


def test_stage_classifier_adds_a_classifier_and_leaves_the_network_byte_identical(
        tiny_ckpt, text_ckpt, layout_72, tmp_path, capsys):
    path = tmp_path / "old.pt"
    shutil.copy(tiny_ckpt, path)
    before = load_checkpoint(path)
    argv = ["--stage", "classifier", "--resume", str(path), "--classifier_steps", "2",
            *stage_args(layout_72, text_ckpt, tmp_path)]
    assert train.main(argv) == 0
    after = load_checkpoint(path)
    assert after["model"].keys() == before["model"].keys()
    assert all(after["model"][k].numpy().tobytes() == before["model"][k].numpy().tobytes() for k in before["model"])
    assert {k: v for k, v in after.items() if k not in ("model", "classifier")} == \
        {k: v for k, v in before.items() if k != "model"}
    net = load_classifier(after, path)
    info = after["classifier"]["info"]
    assert net.labels == ("denoise", "derain", "dehaze")
    assert info["degraded_images"] + info["held_degraded_images"] == 6 and info["held_degraded_images"] >= 1
    assert set(info["thresholds"]) == set(net.labels) and info["threshold_images"] > 0
    out = capsys.readouterr().out
    assert "stored in" in out and "thresholds chosen on" in out
    assert train.main(argv) == 2  # a second one replaces it only with --overwrite
    assert "--overwrite" in capsys.readouterr().err


def test_stage_classifier_refuses_images_too_small_in_one_line_and_leaves_the_checkpoint(
        tiny_ckpt, text_ckpt, tiny_layout, tmp_path, capsys):
    path = tmp_path / "old.pt"
    shutil.copy(tiny_ckpt, path)
    before = path.read_bytes()
    argv = ["--stage", "classifier", "--resume", str(path), "--classifier_steps", "2",
            *stage_args(tiny_layout / "Train", text_ckpt, tmp_path)]
    assert train.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "64x64" in err and "--classifier_steps 0" in err
    assert path.read_bytes() == before
    assert train.main(["--stage", "classifier", *stage_args(tiny_layout / "Train", text_ckpt, tmp_path)]) == 2
    assert "--resume" in capsys.readouterr().err


def test_stage_classifier_refuses_tasks_the_network_lacks_in_one_line(tiny_ckpt, text_ckpt, layout_72, tmp_path,
                                                                    capsys):
    path = tmp_path / "two.pt"
    ckpt = load_checkpoint(tiny_ckpt)
    save_checkpoint(path, {**ckpt, "options": {**(ckpt.get("options") or {}), "de_type": ["denoise_25", "dehaze"]}})
    before = path.read_bytes()
    argv = ["--stage", "classifier", "--resume", str(path), "--classifier_steps", "2",
            *stage_args(layout_72, text_ckpt, tmp_path)]
    assert train.main(argv + ["--de_type", "derain"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and str(path) in err and "not derain" in err and "denoise, dehaze" in err
    assert path.read_bytes() == before
    assert train.main(argv + ["--de_type", "dehaze"]) == 0  # a subset of its tasks is fine
    assert load_classifier(load_checkpoint(path), path).labels == ("dehaze",)


def test_a_finished_restoration_run_stores_its_classifier_and_a_stopped_one_does_not(text_ckpt, layout_72, tmp_path):
    args = stage_args(layout_72, text_ckpt, tmp_path) + ["--epochs", "1", "--de_type", "denoise_15", "derain",
                                                        "--repeat", "denoise_15=1", "derain=1", "--classifier_steps", "2",
                                                        "--text_cond", "none"]
    assert train.main(args + ["--name", "stopped", "--max_steps", "1"]) == 0
    assert load_classifier(load_checkpoint(tmp_path / "ckpt/stopped/last.pt")) is None
    assert train.main(args + ["--name", "done"]) == 0
    net = load_classifier(load_checkpoint(tmp_path / "ckpt/done/last.pt"))
    assert net is not None and net.labels == ("denoise", "derain")  # the tasks this run trained


def test_blind_accuracy_counts_every_set_equally_and_refuses_a_checkpoint_without_a_classifier(
        tiny_ckpt, tmp_path, capsys):
    from utils.eval import blind_accuracy

    rng = np.random.default_rng(3)
    for i in range(2):
        write(tmp_path / "photos" / f"{i}.png", smooth_image(rng, 64, 72))
    torch.manual_seed(0)
    out = blind_accuracy.evaluate(DegradationClassifier(width=4, stages=2), [tmp_path / "photos"], per_set=3, size=48)
    crops = out["crops"]
    assert crops["n"] == 24 and out["photos"] == 2
    assert all(sum(row.values()) == 3 for row in crops["confusion"].values())
    exact = sum(crops["confusion"][a][a] for a in crops["confusion"]) / 24
    assert crops["exact"] == pytest.approx(exact)
    assert blind_accuracy.main(["--ckpt", str(tiny_ckpt), "--photos", str(tmp_path / "photos")]) == 2
    assert "--stage classifier" in capsys.readouterr().err


class _Recorder(DegradationClassifier):
    """The classifier, recording the shape of every batch it reads."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(tuple(x.shape))
        return super().forward(x)


def test_a_whole_photo_is_read_from_native_crops_and_one_shrunk_view_at_a_bounded_cost():
    from net.degradation_classifier import GLOBAL_LABELS, global_view

    torch.manual_seed(0)
    net = _Recorder(width=4, stages=2).eval()
    for h, w in ((600, 900), (2000, 3000), (64, 4000)):
        net.seen = []
        image = smooth_image(np.random.default_rng(h), h, w)
        probs = predict_degradations(net, image)
        (crops, _, ch, cw), whole = net.seen
        assert crops <= MAX_CROPS and len(net.seen) == 2 and whole[0] == 1
        assert (ch, cw) == (net.crop, net.crop)  # native crops of the side it trained on
        assert min(whole[2:]) == min(GLOBAL_SIDE, h) and max(whole[2:]) <= 4 * GLOBAL_SIDE  # shorter side 128, longer bounded
        x = torch.from_numpy(global_view(image)).permute(2, 0, 1)[None].float() / 255.0  # 1 x 3 x h x w
        direct = torch.sigmoid(net(x))[0].tolist()
        for i, t in enumerate(net.labels):
            if t in GLOBAL_LABELS:
                assert probs[t] == pytest.approx(direct[i], abs=1e-6)


def test_blind_accuracy_reads_whole_images_in_three_groups_each_its_own_set(tiny_ckpt, tiny_layout, tmp_path, capsys):
    from utils.eval import blind_accuracy

    rng = np.random.default_rng(3)
    for i in range(2):
        write(tmp_path / "photos" / f"{i}.png", smooth_image(rng, 64, 72))
        write(tmp_path / "rainy" / f"{i}.png", smooth_image(rng, 40, 40))
    ckpt = load_checkpoint(tiny_ckpt)
    torch.manual_seed(0)
    net = DegradationClassifier(width=4, stages=2)
    path = tmp_path / "reads.pt"
    save_checkpoint(path, {**ckpt, "classifier": {"labels": list(net.labels), "config": dict(net.config),
                                                  "state": net.state_dict()}})
    argv = ["--ckpt", str(path), "--photos", str(tmp_path / "photos"), "--test_root", str(tiny_layout / "test"),
            "--real", f"derain={tmp_path / 'rainy'}", "--json", str(tmp_path / "out" / "scores.json")]
    assert blind_accuracy.main(argv) == 0
    out = capsys.readouterr().out
    import json

    sets = json.loads((tmp_path / "out" / "scores.json").read_text())["whole"]
    names = [s["set"] for s in sets]
    assert names == ["noise photos σ=15", "noise photos σ=25", "noise photos σ=50", "Rain100L (derain)",
                     "SOTS (dehaze)", "rainy (derain)", "clean photos"]
    truths = [s["truth"] for s in sets]
    assert truths == ["denoise"] * 3 + ["derain", "dehaze", "derain", "none"]
    for s in sets:
        assert s["n"] == 2 and sum(s["read_as"].values()) == 2
        assert s["exact"] == pytest.approx(s["read_as"].get(s["truth"], 0) / 2)
        assert f"{s['set']}: read exactly as {s['truth']}" in out
    assert blind_accuracy.main(argv) == 2  # the scores already there are not replaced
    assert "--json" in capsys.readouterr().err


def test_a_classifier_reads_crops_of_its_training_side_also_one_stored_before_it_recorded_it(tiny_ckpt):
    torch.manual_seed(0)
    net = _Recorder(width=4, stages=2, crop=48).eval()
    net.seen = []
    predict_degradations(net, smooth_image(np.random.default_rng(2), 300, 400))
    assert net.seen[0][2:] == (48, 48) and min(net.seen[1][2:]) == 128  # crops, then the shrunk whole view
    ckpt = load_checkpoint(tiny_ckpt)
    config = {k: v for k, v in net.config.items() if k != "crop"}  # as a classifier was stored before
    old = {"labels": list(net.labels), "config": config, "state": net.state_dict()}
    assert load_classifier({**ckpt, "classifier": {**old, "recipe": {"size": 40}}}).crop == 40
    assert load_classifier({**ckpt, "classifier": old}).crop == TRAINING_CROP
    with pytest.raises(ValueError):
        DegradationClassifier(width=4, stages=2, crop=8)
