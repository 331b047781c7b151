"""The instruction bank, its TSV reader and the prompts stored for restoration training."""
from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest
import torch

from utils.errors import UserError
from utils.tasks import TASKS, join_tasks
from utils.text.bank import (
    BANK_ROOT,
    DEFAULT_INSTRUCTIONS,
    HELDOUT_FILES,
    UNRELATED_VAL_FILE,
    load_bank,
    load_labelled,
    load_unrelated,
    read_instruction_tsv,
    read_unrelated,
    task_set,
)
from utils.text.embeddings import bank_embeddings


def norm(s: str) -> str:
    return re.sub(r"[\s.!?]+$", "", " ".join(s.lower().split()))


def test_bank_sizes():
    train, val = load_bank("train"), load_bank("val")
    for t in TASKS:
        assert len(train[t]) >= 60, t
        assert len(val[t]) >= 20, t
    assert len(load_unrelated()) >= 50


def test_no_duplicates_within_or_across_bank_files():
    seen: dict[str, str] = {}
    groups = [(split, s) for split in ("train", "val") for s, _ in load_labelled(split)]
    for name in ("compound_heldout", "negation_heldout", "requests_heldout", "phrasing_heldout"):
        groups += [(name, s) for s, _ in read_instruction_tsv(BANK_ROOT / f"{name}.tsv")]
    groups += [("unrelated", s) for s in load_unrelated()]
    groups += [("unrelated_val", s) for s in load_unrelated(name="unrelated_val.txt")]
    groups += [("unrelated_heldout", s) for s in read_unrelated(BANK_ROOT / "unrelated_heldout.txt")]
    for where, s in groups:
        key = norm(s)
        assert key not in seen, f"{s!r} in {where} repeats a sentence of {seen.get(key)}"
        seen[key] = where


def test_default_instructions_come_from_val():
    val = load_bank("val")
    assert tuple(DEFAULT_INSTRUCTIONS) == TASKS
    for t, s in DEFAULT_INSTRUCTIONS.items():
        assert s in val[t]


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_the_shipped_bank_has_negation_splits_an_off_topic_validation_file_and_held_out_phrasing():
    sizes = {name: len(read_instruction_tsv(BANK_ROOT / f"{name}.tsv"))
             for name in ("negation_train", "negation_val", "negation_heldout", "requests_heldout", "phrasing_heldout")}
    assert sizes["negation_train"] >= 60 and sizes["negation_val"] >= 25 and sizes["negation_heldout"] >= 25
    assert sizes["requests_heldout"] == sizes["phrasing_heldout"] == 60
    phrasing_val = read_instruction_tsv(BANK_ROOT / "phrasing_val.tsv")
    assert len(phrasing_val) >= 40 and set(phrasing_val) <= {(s, t[0]) for s, t in load_labelled("val")}
    off_val = load_unrelated(name=UNRELATED_VAL_FILE)
    assert len(off_val) >= 40 and any("rm -rf" in s for s in off_val)
    # negation rows train the head; held-out files are read by neither training nor the threshold's choice
    assert {s for s, _ in read_instruction_tsv(BANK_ROOT / "negation_train.tsv")} <= {s for s, _ in load_labelled()}
    assert {"negation_heldout.tsv", "requests_heldout.tsv", "phrasing_heldout.tsv"} <= set(HELDOUT_FILES)
    assert UNRELATED_VAL_FILE not in HELDOUT_FILES


def test_read_tsv_accepts_blank_lines_and_normalises(tmp_path):
    p = write(tmp_path / "a.tsv", "instruction\ttask\n  remove   the rain \tderain\n\nfog!\t Dehaze\n")
    assert read_instruction_tsv(p) == [("remove the rain", "derain"), ("fog!", "dehaze")]


def test_read_tsv_accepts_task_sets_in_canonical_order(tmp_path):
    p = write(tmp_path / "a.tsv", "instruction\ttask\nremove the rain and the noise\tdenoise+derain\n"
              "dark and shaky\t Deblur + Lowlight\nsharpen the text on the sign\tdeblur\n")
    assert read_instruction_tsv(p) == [("remove the rain and the noise", "denoise+derain"),
                                       ("dark and shaky", "deblur+lowlight"), ("sharpen the text on the sign", "deblur")]
    assert task_set("denoise+derain+lowlight") == ("denoise", "derain", "lowlight")
    assert join_tasks(("lowlight", "denoise")) == "denoise+lowlight" and join_tasks(()) == "none"


def test_a_task_set_is_a_set_in_any_order(tmp_path):
    p = write(tmp_path / "a.tsv", "instruction\ttask\nremove the rain and the noise\tderain+denoise\n"
              "fog, rain, grain\tdehaze+denoise+derain\ndark and shaky\tLowlight+Deblur\n")
    assert [label for _, label in read_instruction_tsv(p)] == ["denoise+derain", "denoise+derain+dehaze",
                                                               "deblur+lowlight"]
    assert task_set("derain+denoise") == task_set("denoise+derain") == ("denoise", "derain")
    assert task_set("lowlight+denoise+derain") == ("denoise", "derain", "lowlight")


def test_a_task_set_in_the_restoration_bank_points_to_the_compound_file(tmp_path):
    write(tmp_path / "train.tsv", "instruction\ttask\nnoise\tdenoise\nrain\tderain\nfog\tdehaze\n"
          "rain and fog\tderain+dehaze\n")
    with pytest.raises(UserError, match=r"train.tsv: 'rain and fog' is labelled derain\+dehaze;.*compound_train.tsv"):
        load_bank("train", tmp_path)


def test_labelled_rows_join_the_single_and_compound_files(tmp_path):
    write(tmp_path / "train.tsv", "instruction\ttask\nnoise\tdenoise\nrain\tderain\nfog\tdehaze\n")
    assert load_labelled("train", tmp_path) == [("noise", ("denoise",)), ("rain", ("derain",)), ("fog", ("dehaze",))]
    write(tmp_path / "compound_train.tsv", "instruction\ttask\nrain and fog\tderain+dehaze\n")
    assert load_labelled("train", tmp_path)[-1] == ("rain and fog", ("derain", "dehaze"))


def test_the_shipped_bank_covers_five_tasks_compounds_and_held_out_sets():
    train, val = load_labelled("train"), load_labelled("val")
    for rows in (train, val):
        singles = {tasks[0] for _, tasks in rows if len(tasks) == 1}
        assert singles == set(TASKS)
        assert sum(len(tasks) > 1 for _, tasks in rows) >= 50
    heldout = read_instruction_tsv(BANK_ROOT / "compound_heldout.tsv")
    assert len(heldout) >= 60 and all("+" in task for _, task in heldout)
    assert len(read_unrelated(BANK_ROOT / "unrelated_heldout.txt")) >= 60
    # requests the five tasks make valid are no longer in the unrelated bank
    unrelated = {norm(s) for s in load_unrelated()}
    assert not {"sharpen the text", "turn the lights on", "enhance this image"} & unrelated


@pytest.mark.parametrize("content, pattern", [
    ("text\tlabel\nx\tderain\n", r":1: the first line must be the header"),
    ("instruction\ttask\nremove rain\n", r":2: expected 2 tab-separated fields"),
    ("instruction\ttask\nremove rain\tderain\nremove the snow\tdesnow\n", r":3: unknown task 'desnow'"),
    ("instruction\ttask\nrain\tderain+derain\n", r":2: task set 'derain\+derain' names a task twice"),
    ("instruction\ttask\nrain\tderain+\n", r":2: unknown task ''"),
    ("instruction\ttask\nmake me a sandwich\tnone\n", r":2: unknown task 'none'.*plain-text file"),
    ("instruction\ttask\nremove rain\tderain\nRemove  rain\tdehaze\n", r":3: 'Remove rain' repeats line 2"),
    ("instruction\ttask\n \tdenoise\n", r":2: empty instruction"),
    ("instruction\ttask\n", r"no instructions after the header"),
    ("", r":1: the first line must be the header"),
])
def test_read_tsv_errors_name_file_and_line(tmp_path, content, pattern):
    p = write(tmp_path / "bad.tsv", content)
    with pytest.raises(UserError) as err:
        read_instruction_tsv(p)
    assert re.search(pattern, str(err.value)) and str(p) in str(err.value)


def test_missing_files_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="no such file"):
        read_instruction_tsv(tmp_path / "none.tsv")
    with pytest.raises(UserError, match="unrelated.txt"):
        load_unrelated(tmp_path)
    write(tmp_path / "train.tsv", "instruction\ttask\nremove the rain\tderain\n")
    with pytest.raises(UserError, match="no instructions for denoise, dehaze"):
        load_bank("train", tmp_path)


class StubEncoder:
    """Duck-typed stand-in for InstructionEncoder: deterministic per-sentence vectors."""

    hidden_size = 4

    def __init__(self, tag: str = "a") -> None:
        self.tag, self.calls = tag, 0

    def fingerprint(self) -> str:
        return self.tag

    def embed(self, texts: list[str]) -> torch.Tensor:
        self.calls += 1
        rows = [[b / 255 for b in hashlib.sha256((self.tag + t).encode()).digest()[:4]] for t in texts]
        return torch.tensor(rows)


def make_bank(root: Path, extra: str = "") -> Path:
    root.mkdir(exist_ok=True)
    write(root / "train.tsv", "instruction\ttask\nremove the rain\tderain\nnoise\tdenoise\nfog\tdehaze\n"
          "it's grainy\tdenoise\n" + extra)
    return root


def test_bank_embeddings_rows_and_index(tmp_path):
    root = make_bank(tmp_path / "bank")
    enc = StubEncoder()
    table, index = bank_embeddings(enc, "train", root=root)
    assert index == {"denoise": [0, 1], "derain": [2], "dehaze": [3]}
    sentences = ["noise", "it's grainy", "remove the rain", "fog"]
    assert torch.equal(table, enc.embed(sentences))


def test_training_prompts_are_stored_and_redone_only_when_needed(tmp_path, text_ckpt, monkeypatch):
    import shutil

    import utils.text.embeddings as ins

    encoder_dir = tmp_path / "encoder"
    shutil.copytree(text_ckpt, encoder_dir)
    root = make_bank(tmp_path / "bank")
    written = []
    real_write = ins.write_embeddings
    monkeypatch.setattr(ins, "write_embeddings", lambda *a, **k: written.append(1) or real_write(*a, **k))

    first = ins.training_embeddings(encoder_dir, root)
    assert first["rows"] == {"denoise": [0, 1], "derain": [2], "dehaze": [3]}
    assert first["table"].shape == (4, 384) and set(first["defaults"]) == set(TASKS)
    again = ins.training_embeddings(encoder_dir, root)
    assert len(written) == 1 and torch.equal(again["table"], first["table"])  # read back, not recomputed

    make_bank(root, extra="drizzle\tderain\n")  # an edited bank is embedded again
    edited = ins.training_embeddings(encoder_dir, root)
    assert len(written) == 2 and edited["rows"]["derain"] == [2, 3]

    only_prompts = tmp_path / "copied"  # e.g. what was copied to a training machine
    only_prompts.mkdir()
    shutil.copy(encoder_dir / ins.EMBEDDINGS_FILE, only_prompts)
    assert torch.equal(ins.training_embeddings(only_prompts, root)["table"], edited["table"])
    make_bank(root, extra="drizzle\tderain\nhaze\tdehaze\n")
    with pytest.raises(UserError, match="another instruction bank"):
        ins.training_embeddings(only_prompts, root)
    with pytest.raises(UserError, match="--stage text"):
        ins.training_embeddings(tmp_path / "empty", root)


def test_a_line_separator_inside_an_instruction_does_not_split_its_line(tmp_path):
    path = tmp_path / "mine.tsv"
    write(path, "instruction\ttask\nremove the rain\u2028streaks please\tderain\r\nclear\u0085the fog\tdehaze\n")
    # one row each (the separators count as spaces inside the sentence)
    assert read_instruction_tsv(path) == [("remove the rain streaks please", "derain"), ("clear the fog", "dehaze")]


def test_bank_root_default_is_the_repo_folder():
    assert BANK_ROOT == Path(__file__).resolve().parents[1] / "data" / "instructions"
    assert (BANK_ROOT / "train.tsv").is_file() and (BANK_ROOT / "val.tsv").is_file()


def test_a_malicious_prompts_file_is_one_line_and_never_runs(tmp_path, text_ckpt):
    import os
    import shutil

    from utils.text.embeddings import EMBEDDINGS_FILE, training_embeddings

    class RunsCode:
        def __reduce__(self):
            return os.system, (f"touch {tmp_path / 'code_ran'}",)

    with_weights, prompts_only = tmp_path / "encoder", tmp_path / "prompts_only"
    shutil.copytree(text_ckpt, with_weights)
    prompts_only.mkdir()
    for folder in (with_weights, prompts_only):
        torch.save({"table": RunsCode(), "rows": {}, "fingerprint": "x"}, folder / EMBEDDINGS_FILE)
        with pytest.raises(UserError) as caught:
            training_embeddings(folder)
        message = str(caught.value)
        assert len(message.splitlines()) == 1 and str(folder / EMBEDDINGS_FILE) in message
        assert "not a valid" in message and "weights_only" not in message
    assert not (tmp_path / "code_ran").exists()
