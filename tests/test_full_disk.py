"""A full disk: a failing TensorBoard log never costs the training, and a checkpoint, run lock or
log that finds no room is one line naming the folder, with the previous last.pt intact. The
writers are made to fail with ENOSPC, so no small file system is needed."""
from __future__ import annotations

import errno
import os

import pytest
import torch
from tensorboard.summary.writer.record_writer import RecordWriter

import train
import utils.atomic
import utils.train.run_lock
from tests.test_train import base_args
from utils.full_disk import is_disk_full


def no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_a_log_disk_that_fills_mid_run_warns_once_and_training_saves(tiny_layout, text_ckpt, tmp_path, capsys,
                                                                     monkeypatch):
    real_write = RecordWriter.write
    written = {"records": 0}

    def fills_up(self, data):  # the event file's first record fits, then the disk is full
        written["records"] += 1
        if written["records"] > 1:
            no_space()
        real_write(self, data)

    monkeypatch.setattr(RecordWriter, "write", fills_up)
    monkeypatch.setattr(RecordWriter, "flush", lambda self: no_space() if written["records"] > 1 else None)
    args = base_args(tiny_layout, text_ckpt, tmp_path, "logfull") + ["--max_steps", "4", "--log_every", "1"]
    assert train.main(args) == 0
    err = capsys.readouterr().err
    # one warning about the log (a loaded machine may add the data-wait warning, which is about timing)
    warned = [line for line in err.splitlines() if line.strip() and "waited for data" not in line]
    assert len(warned) == 1 and "Traceback" not in err, err
    assert str(tmp_path / "logs/logfull") in warned[0] and "logging stopped" in warned[0]
    assert torch.load(tmp_path / "ckpt/logfull/last.pt", weights_only=True)["step"] == 4


def test_no_room_for_the_log_at_start_up_is_one_line(tiny_layout, text_ckpt, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(RecordWriter, "write", lambda self, data: no_space())
    assert train.main(base_args(tiny_layout, text_ckpt, tmp_path, "logstart") + ["--max_steps", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(tmp_path / "logs/logstart") in err[0] and "no space left" in err[0]
    assert "--log_dir" in err[0]


def test_no_room_for_the_run_lock_is_one_line(tiny_layout, text_ckpt, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(utils.train.run_lock.os, "pwrite", no_space)
    assert train.main(base_args(tiny_layout, text_ckpt, tmp_path, "lockfull") + ["--max_steps", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(tmp_path / "ckpt/lockfull") in err[0] and "no space left" in err[0]


class RoomFor:
    """A file object that takes ``room`` bytes, then fails as a full disk does."""

    def __init__(self, f, room: int) -> None:
        self.f, self.room = f, room

    def write(self, data) -> int:
        if len(data) > self.room:
            no_space()
        self.room -= len(data)
        return self.f.write(data)

    def __getattr__(self, name):
        return getattr(self.f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()


def test_no_room_for_a_checkpoint_is_one_line_and_the_previous_one_stays(tiny_layout, text_ckpt, tmp_path, capsys,
                                                                         monkeypatch):
    args = base_args(tiny_layout, text_ckpt, tmp_path, "ckptfull")
    assert train.main(args + ["--max_steps", "2"]) == 0
    last = tmp_path / "ckpt/ckptfull/last.pt"
    before = last.read_bytes()
    capsys.readouterr()
    real_fdopen = os.fdopen
    monkeypatch.setattr(utils.atomic.os, "fdopen", lambda fd, mode: RoomFor(real_fdopen(fd, mode), 100_000))
    assert train.main(args + ["--max_steps", "4", "--resume"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert str(last.parent) in err[0] and "no space left" in err[0] and "needs about" in err[0] and " MB" in err[0]
    assert "previous last.pt is unchanged" in err[0] and "step 4" in err[0] and "--resume" in err[0]
    assert last.read_bytes() == before
    assert sorted(p.name for p in last.parent.iterdir() if ".tmp" in p.name) == []


def test_a_full_disk_is_seen_behind_the_error_torch_adds():
    try:
        try:
            no_space()
        except OSError:
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598") from None
    except RuntimeError as e:
        assert is_disk_full(e)
    assert not is_disk_full(RuntimeError("something else"))
    with pytest.raises(OSError):  # other write errors are not taken for a full disk
        try:
            raise OSError(errno.EIO, "I/O error")
        except OSError as e:
            assert not is_disk_full(e)
            raise
