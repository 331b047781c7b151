"""Composite test sets (several degradations in one input) and the task-by-task route."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import test as test_script
from tests.conftest import smooth_image, write
from utils.errors import UserError
from utils.eval.benchmarks import find_test_sets
from utils.eval.routes import BlindRoute, TaskChain, confusion, exact_set_accuracy
from utils.tasks import join_tasks, restore_order, split_tasks


class Recorder(torch.nn.Module):
    """Adds the first number of each embedding it is given, and remembers the order."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[float] = []
        self.p = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        self.seen.append(float(e[0, 0]))
        return x + e[:, :1, None, None]


def composite_root(tmp_path: Path, name: str = "denoise+derain") -> Path:
    rng = np.random.default_rng(0)
    for stem in ("a", "b"):
        clean = smooth_image(rng, 48, 40)
        write(tmp_path / "test" / "composite" / name / "target" / f"{stem}.png", clean)
        write(tmp_path / "test" / "composite" / name / "input" / f"{stem}.png", 255 - clean)
    return tmp_path / "test"


def test_task_sets_have_one_spelling_in_task_order():
    assert join_tasks({"derain", "denoise"}) == "denoise+derain"
    assert split_tasks("dehaze+denoise") == ("denoise", "dehaze")
    with pytest.raises(UserError, match="unknown task 'desnow'"):
        split_tasks("denoise+desnow")
    assert restore_order(("dehaze", "denoise"), ("dehaze", "derain", "denoise")) == ("dehaze", "denoise")


def test_a_composite_folder_is_one_set_showing_all_its_tasks(tmp_path):
    root = composite_root(tmp_path)
    sets, _ = find_test_sets(root, "composite")
    assert [(s.label, s.tasks, len(s)) for s in sets] == [("composite denoise+derain", ("denoise", "derain"), 2)]
    assert sets[0][0]["lq"].shape == (3, 48, 32)  # cropped to a multiple of 16 like every set


def test_a_composite_folder_named_for_no_task_is_one_line(tmp_path):
    root = composite_root(tmp_path, "rain+snow")
    with pytest.raises(UserError, match=r"rain\+snow: name a composite set by its tasks joined with '\+'"):
        find_test_sets(root, "composite")


def test_task_chain_runs_one_pass_per_task_in_order_each_with_its_own_embedding():
    model = Recorder()
    chain = TaskChain(model, [torch.full((4,), 0.1), torch.full((4,), 0.2)])
    out = chain(torch.zeros(2, 3, 8, 8), None)
    assert model.seen == pytest.approx([0.1, 0.2])
    assert torch.allclose(out, torch.full_like(out, 0.3))


def test_a_composite_set_is_scored_in_order_and_task_by_task():
    class FakeSet:
        task, tasks, label = "composite", ("denoise", "derain"), "composite denoise+derain"

    rows = test_script.scoring_rows([FakeSet()], order=("derain", "denoise"), conditioned=True)
    assert [(s.label, steps) for s, steps in rows] == [
        ("composite denoise+derain", ("derain", "denoise")),
        ("composite denoise+derain, denoise only", ("denoise",)),
        ("composite denoise+derain, derain only", ("derain",))]


def test_the_blind_route_restores_what_the_image_shows_and_keeps_what_it_read():
    model = Recorder()
    reads = iter([("derain", "denoise"), ()])
    route = BlindRoute(model, lambda rgb: next(reads), {"denoise": torch.full((4,), 0.1),
                                                         "derain": torch.full((4,), 0.2)}, ("denoise", "derain"))
    x = torch.zeros(2, 3, 8, 8)
    out = route(x, None)
    assert model.seen == pytest.approx([0.1, 0.2])  # the first image: both, in order; the second: none
    assert torch.allclose(out[1], x[1]) and route.predictions == [("derain", "denoise"), ()]
    truth = [("denoise", "derain"), ("dehaze",)]
    assert exact_set_accuracy(truth, route.predictions) == 0.5
    assert confusion(truth, route.predictions) == {"denoise+derain": {"denoise+derain": 1}, "dehaze": {"none": 1}}


def test_test_py_scores_a_composite_set_with_its_sequence_and_each_task_alone(tmp_path, tiny_layout, text_ckpt,
                                                                             capsys):
    import train
    from tests.conftest import TINY_NET

    ck = tmp_path / "ckpt"
    assert train.main(["--data_root", str(tiny_layout / "Train"), "--text_ckpt", str(text_ckpt), "--ckpt_dir",
                       str(ck), "--log_dir", str(tmp_path / "logs"), "--name", "c", *TINY_NET, "--batch_size", "2",
                       "--patch_size", "16", "--num_workers", "0", "--max_steps", "1", "--val_every", "0",
                       "--no_progress"]) == 0
    root = composite_root(tmp_path)
    capsys.readouterr()
    assert test_script.main(["--ckpt", str(ck / "c" / "last.pt"), "--test_root", str(root), "--mode", "composite",
                             "--output_dir", str(tmp_path / "out"), "--num_workers", "0", "--no_progress",
                             "--order", "derain,denoise"]) == 0
    out = capsys.readouterr().out
    for label in ("composite denoise+derain:", "composite denoise+derain, denoise only:",
                  "composite denoise+derain, derain only:"):
        assert label in out
    scores = [line.split("PSNR ")[1].split(" dB")[0] for line in out.splitlines() if line.startswith("composite")]
    assert len(set(scores)) > 1  # the sequence and each single pass are different restorations


@pytest.mark.parametrize("bad", ["derain,derain", "rain,denoise", ","])
def test_a_bad_order_is_one_line(bad, capsys):
    assert test_script.main(["--order", bad]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) <= 2 and "--order" in err[-1]


def test_training_validates_only_the_tasks_it_trains(tmp_path, tiny_layout):
    """A --val_root holding composite sets (as the demo set does) validates its single-task sets only."""
    import shutil
    from argparse import Namespace

    from utils.train.validation import validation_sets

    root = composite_root(tmp_path)
    shutil.copytree(tiny_layout / "test" / "derain", root / "derain")
    args = Namespace(val_every=1, val_root=str(root), clean_images=False, de_type=["derain"], max_pixels=10**8)
    assert {s.task for s in validation_sets(args)} == {"derain"}
