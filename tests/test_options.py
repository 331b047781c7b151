"""Recipes (configs/*.yaml) are option defaults: every key of every file is a real option with an
allowed value, paper.yaml holds every default, and paper.yaml < --preset < --config < the command
line. A typo in a recipe is an error, never a value silently ignored."""
from __future__ import annotations

from pathlib import Path

import pytest

import options
from net.model import ModelConfig
from options import train_options, train_parser
from utils.errors import UserError
from utils.recipe import (
    CONFIGS,
    PAPER,
    paper_values,
    parser_values,
    read_recipe,
    recipe_keys,
    recipe_names,
    recipe_record,
)

RECIPE_FILES = sorted(CONFIGS.rglob("*.yaml"))
PER_RUN = ("preset", "config", "stage", "name", "resume", "init", "overwrite", "max_steps", "ckpt_dir", "log_dir")


def test_the_built_in_recipes_are_the_presets():
    assert recipe_names() == ["demo", "demo_five", "demo_gpu", "dev", "five_task", "paper"]
    assert len(RECIPE_FILES) == 7  # and configs/shared/demo_set.yaml, a shared piece


@pytest.mark.parametrize("path", RECIPE_FILES, ids=lambda p: str(p.relative_to(CONFIGS)))
def test_every_recipe_file_loads_and_each_value_is_an_option_with_an_allowed_value(path):
    parsers = {"train": train_parser(), "test": options.test_parser()}
    nullable = [k for k, v in paper_values("train").items() if v is None]
    for script, parser in parsers.items():
        values = read_recipe(path, script, recipe_keys())
        assert values, path
        parser_values(parser, values, path, nullable)  # raises on any value the option refuses
    options_of = {a.dest for parser in parsers.values() for a in parser._actions}
    assert set(recipe_keys()) <= options_of
    assert not set(recipe_keys()) & set(PER_RUN)


def test_paper_yaml_holds_every_default_and_its_network_is_the_papers():
    parser = train_parser()
    defaults = {a.dest: a.default for a in parser._actions}
    paper = paper_values("train")
    for key in recipe_keys():
        if key in defaults and key != "test_root":
            assert key in paper, f"configs/paper.yaml lacks {key}"
    network = {k: paper[k] for k in ModelConfig().to_dict() if k != "text_dim"}
    assert ModelConfig(text_dim=384, **network) == ModelConfig(text_dim=384)


def test_the_demo_preset_is_what_train_py_runs_and_a_flag_still_wins():
    args = train_options(["--preset", "demo", "--epochs", "3"])
    assert args.name == "demo" and args.dim == 16 and args.epochs == 3
    assert train_options([]).name == "textpromptir"


def test_training_only_preset_values_reach_train_py_but_not_test_py():
    assert train_options(["--preset", "demo"]).precision == "bf16"
    assert options.test_options(["--preset", "demo"]).precision == "fp32"  # the protocol scores in fp32
    assert options.test_options(["--preset", "demo"]).num_workers == 0  # a value of both scripts
    assert train_options(["--preset", "demo_gpu"]).num_workers == 8
    assert options.test_options(["--preset", "demo_gpu"]).num_workers == 2


def test_test_py_scores_in_fp32_by_default_on_every_device_and_demo_py_keeps_auto():
    assert options.test_options([]).precision == "fp32"
    assert options.test_options(["--precision", "bf16"]).precision == "bf16"  # still an option
    assert options.demo_parser().parse_args(["--input", "x", "--task", "denoise"]).precision == "auto"


def write(tmp_path: Path, text: str, name: str = "mine.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_precedence_is_paper_then_preset_then_config_then_the_command_line(tmp_path):
    mine = write(tmp_path, "lr: 1.0e-3\nbatch_size: 3\nepochs: 7\ntrain:\n  precision: fp32\n")
    args = train_options(["--preset", "demo", "--config", str(mine), "--epochs", "9"])
    assert args.weight_decay == 0.01  # paper.yaml
    assert args.dim == 16 and args.patch_size == 64  # --preset demo over paper.yaml
    assert args.lr == 1e-3 and args.batch_size == 3 and args.precision == "fp32"  # --config over --preset
    assert args.epochs == 9  # the command line over --config
    assert train_options(["--config", str(mine)]).dim == 48  # no preset: the paper's network


def test_a_recipe_extends_its_base_and_its_own_values_win(tmp_path):
    write(tmp_path, "base: demo\nepochs: 2\n", "small.yaml")
    mine = write(tmp_path, "base: small.yaml\nlr: 3.0e-3\n")
    args = train_options(["--config", str(mine)])
    assert (args.dim, args.epochs, args.lr, args.precision) == (16, 2, 3e-3, "bf16")


def test_the_saved_options_file_holds_only_recipe_keys_and_reads_back_to_the_same_run(tmp_path):
    argv = ["--preset", "demo_five", "--name", "x", "--stage", "all", "--resume", "--overwrite", "--seed", "3",
            "--repeat", "derain=7", "--identity_share", "0.1", "dehaze=0.2"]
    record = recipe_record(train_options(argv))
    assert not set(record) & set(PER_RUN) and set(record) - {"train"} <= set(recipe_keys())
    saved = write(tmp_path, __import__("yaml").safe_dump(record))
    again = train_options(["--config", str(saved)])
    assert recipe_record(again) == record and again.name == "textpromptir" and again.stage == "restore"
    assert record["identity_share"] == [0.1, "dehaze=0.2"]
    assert record["train"] == {"precision": "bf16", "num_workers": 0}  # test.py keeps its own
    assert options.test_options(["--config", str(saved)]).precision == "fp32"


@pytest.mark.parametrize("text, words", [
    ("lrr: 1.0e-3\n", ["unknown key 'lrr'", "did you mean 'lr'"]),
    ("name: mine\n", ["unknown key 'name'"]),  # a per-run option: the command line's
    ("train:\n  precison: fp32\n", ["unknown key 'precison'", "'precision'"]),
    ("patch_size: 100000\n", ["patch_size", "1024"]),
    ("dim: 16.5\n", ["dim", "not an integer"]),
    ("channel_shuffle: 1\n", ["channel_shuffle", "true or false"]),
    ("de_type: denoise_15\n", ["de_type", "list"]),
    ("heads: [1, 2]\n", ["heads", "4 values"]),
    ("loss: l3\n", ["loss", "not one of"]),
    ("repeat: [snow=3]\n", ["repeat", "TASK=N"]),
    ("identity_share: [haze=0.1]\n", ["identity_share", "TASK=P"]),
    ("lr: [1, 2\n", ["not valid YAML", "line"]),
    ("- lr\n", ["a recipe is a mapping"]),
    ("base: huge\n", ["base 'huge' is not a recipe"]),
    ("base: mine.yaml\n", ["leads back to itself"]),
    ("train: 3\n", ["train:"]),
])
def test_a_bad_recipe_is_one_error_naming_the_file_and_the_fix(tmp_path, text, words):
    mine = write(tmp_path, text)
    with pytest.raises(UserError) as e:
        train_options(["--config", str(mine)])
    message = str(e.value)
    assert message.startswith(str(mine)) and "\n" not in message
    for word in words:
        assert word in message, message


def test_a_missing_recipe_file_is_one_error(tmp_path):
    with pytest.raises(UserError, match="no such recipe file"):
        train_options(["--config", str(tmp_path / "none.yaml")])
    with pytest.raises(UserError, match="cannot read"):
        train_options(["--config", str(tmp_path)])


def test_the_paper_recipe_is_the_default_preset():
    assert train_parser().get_default("preset") == PAPER
