"""utils/data/demo_data.py: the bundled demo set (offline, deterministic, paper layouts, split by photo)."""
import subprocess
import sys
from pathlib import Path

import pytest

from utils.data import demo_data as demo
from utils.data.image_io import image_size
from utils.data.layouts import find_train_pairs
from utils.data.train_set import TrainDataset
from utils.errors import UserError
from utils.eval.benchmarks import find_test_sets
from utils.tasks import DEGRADATIONS

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def small_set(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "demo"
    built, files = demo.make_demo(out, seed=0, small=True)
    assert built and files
    return out


def test_every_photo_loads_offline():
    for name in (*demo.TRAIN_PHOTOS, *demo.TEST_PHOTOS):
        img = demo.load_photo_rgb(name)
        assert img.ndim == 3 and img.shape[2] == 3 and img.dtype.name == "uint8"


def test_no_photo_in_both_train_and_test(small_set):
    assert not set(demo.TRAIN_PHOTOS) & set(demo.TEST_PHOTOS)
    train_names = [p.name for p in (small_set / "Train" / "Denoise").iterdir()]
    assert not any(name.startswith(("coffee", "motorcycle")) for name in train_names)


def test_same_seed_same_bytes_other_seed_other_bytes(small_set, tmp_path):
    demo.make_demo(tmp_path / "again", seed=0, small=True)
    demo.make_demo(tmp_path / "other", seed=1, small=True)
    assert demo.tree_digest(tmp_path / "again") == demo.tree_digest(small_set)
    assert demo.tree_digest(tmp_path / "other") != demo.tree_digest(small_set)


def test_layout_is_read_by_the_dataset_code(small_set):
    train = small_set / "Train"
    for de_type in DEGRADATIONS:
        assert find_train_pairs(train, de_type)
    data = TrainDataset(train, patch_size=64, repeats={"derain": 1})
    assert data[(0, len(data) - 1)]["lq"].shape == (3, 64, 64)
    hazy = sorted((train / "Dehaze" / "synthetic" / "part1").iterdir())
    assert all(len(p.stem.split("_")) == 3 for p in hazy)  # ID_A_beta.jpg
    sets, missing = find_test_sets(small_set / "test")  # recognised as the demo set by its manifest
    assert missing == [] and {s.task for s in sets} == {"denoise", "derain", "dehaze", "composite"}
    assert {s.name for s in sets} == {"demo", "composite denoise+derain"}
    composite = next(s for s in sets if s.task == "composite")
    assert composite.tasks == ("denoise", "derain") and len(composite) == 1
    for s in sets:
        assert all(max(image_size(p)) <= 256 for pair in s.pairs for p in pair if p is not None)
        item = s[0]
        assert item["lq"].shape == item["gt"].shape


def test_rerun_skips_then_rebuilds_when_changed(small_set, tmp_path):
    out = tmp_path / "demo"
    demo.make_demo(out, seed=0, small=True)
    built, _ = demo.make_demo(out, seed=0, small=True)
    assert not built
    victim = next((out / "test" / "dehaze" / "input").iterdir())
    victim.unlink()
    built, _ = demo.make_demo(out, seed=0, small=True)
    assert built and victim.exists()
    built, _ = demo.make_demo(out, seed=3, small=True)  # other seed: rebuild in place
    assert built and demo._read_manifest(out)["seed"] == 3


def test_refuses_foreign_folders_and_files(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "photo.jpg").write_bytes(b"user data")
    with pytest.raises(UserError, match="not empty and was not made by utils.data.demo_data"):
        demo.make_demo(tmp_path / "mine", small=True)
    assert (tmp_path / "mine" / "photo.jpg").read_bytes() == b"user data"


def test_command_line_error_has_no_traceback(tmp_path):
    target = tmp_path / "a_file"
    target.write_text("x")
    run = subprocess.run([sys.executable, "-m", "utils.data.demo_data", "--out", str(target)],
                         cwd=REPO, capture_output=True, text=True)
    assert run.returncode == 2
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and str(target) in lines[0]
    assert "Traceback" not in run.stderr


def test_contact_sheet(small_set, tmp_path):
    sheet = demo.contact_sheet(small_set, tmp_path / "sheet.png")
    assert sheet.stat().st_size > 0 and image_size(sheet)[0] > 3 * 120
