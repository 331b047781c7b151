"""The instruction head's threshold: chosen on the validation files only (the val requests and the
off-topic validation file), stored with the encoder and read back."""
from __future__ import annotations

import json

import pytest
import torch

from net.text_encoder import META_FILE, TASK_THRESHOLD, InstructionEncoder
from utils.errors import UserError
from utils.tasks import TASKS
from utils.text.finetune import THRESHOLD_CHOICES, choose_threshold


class TableEncoder:
    """Duck-typed sigmoid-head encoder reading each sentence as a fixed row of probabilities."""

    labels = TASKS
    head_kind = "sigmoid"

    def __init__(self, table: dict[str, list[float]]) -> None:
        self.table = table
        self.threshold = TASK_THRESHOLD
        self.calls = 0

    def classify(self, texts: list[str]) -> torch.Tensor:
        self.calls += 1
        return torch.tensor([self.table[t] for t in texts])

    def tasks_of(self, probs: torch.Tensor) -> tuple[str, ...]:
        return tuple(t for t, p in zip(TASKS, probs.tolist()) if p >= self.threshold)


VAL = [("remove the rain", ("derain",)), ("it's foggy", ("dehaze",))]
TABLE = {"remove the rain": [0.1, 0.62, 0.1, 0.1, 0.1], "it's foggy": [0.1, 0.1, 0.9, 0.1, 0.1]}


def test_the_off_topic_validation_file_moves_the_threshold():
    # an off-topic request read at 0.55: only a threshold above it refuses it, and the val requests
    # still pass up to 0.60
    enc = TableEncoder({**TABLE, "delete every file": [0.55, 0.1, 0.1, 0.1, 0.1]})
    threshold, scores = choose_threshold(enc, VAL, ["delete every file"])
    assert threshold == enc.threshold == 0.6
    assert [s["threshold"] for s in scores] == list(THRESHOLD_CHOICES)
    assert next(s for s in scores if s["threshold"] == 0.5) == {"threshold": 0.5, "val_accuracy": 1.0,
                                                                "unrelated_refused": 0.0}
    assert enc.calls == 2  # each file read once (val, off-topic), whatever the number of thresholds tried
    # without it every threshold up to 0.60 scores the same: the one nearest 0.5 is kept
    assert choose_threshold(TableEncoder(TABLE), VAL, [])[0] == 0.5


def test_a_stored_threshold_is_read_back_and_checked(text_ckpt, tmp_path):
    import shutil

    folder = tmp_path / "enc"
    shutil.copytree(text_ckpt, folder)
    assert InstructionEncoder.load(folder).threshold == TASK_THRESHOLD
    meta = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
    for value, ok in ((0.65, True), (1.5, False)):
        (folder / META_FILE).write_text(json.dumps({**meta, "threshold": value}), encoding="utf-8")
        if ok:
            enc = InstructionEncoder.load(folder)
            assert enc.threshold == value and enc.task_sets(["anything"]) == [("denoise",)]  # 0.95 >= 0.65
        else:
            with pytest.raises(UserError, match="threshold 1.5 is not a probability"):
                InstructionEncoder.load(folder)
