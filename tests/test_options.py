"""Presets are plain option defaults: a typo or an invalid value in one must fail here, not be
silently ignored (argparse's set_defaults accepts any key)."""
from __future__ import annotations

import pytest

import options
from options import PRESETS, TRAIN_ONLY_PRESETS, train_options, train_parser


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_every_preset_value_is_an_option_with_an_allowed_value(preset):
    actions = {a.dest: a for parser in (train_parser(), options.test_parser()) for a in parser._actions}
    train_actions = {a.dest for a in train_parser()._actions}
    assert set(TRAIN_ONLY_PRESETS.get(preset, {})) <= train_actions
    for key, value in {**PRESETS[preset], **TRAIN_ONLY_PRESETS.get(preset, {})}.items():
        assert key in actions, f"preset {preset}: {key} is not an option of train.py or test.py"
        choices = actions[key].choices
        if choices is not None:
            values = value if isinstance(value, list) else [value]
            assert all(v in choices for v in values), f"preset {preset}: {key}={value} not in {choices}"


def test_the_demo_preset_is_what_train_py_runs_and_a_flag_still_wins():
    args = train_options(["--preset", "demo", "--epochs", "3"])
    assert args.name == "demo" and args.dim == PRESETS["demo"]["dim"] and args.epochs == 3


def test_training_only_preset_values_reach_train_py_but_not_test_py():
    assert train_options(["--preset", "demo"]).precision == "bf16"
    assert options.test_options(["--preset", "demo"]).precision == "fp32"  # the protocol scores in fp32


def test_test_py_scores_in_fp32_by_default_on_every_device_and_demo_py_keeps_auto():
    import demo

    assert options.test_options([]).precision == "fp32"
    assert options.test_options(["--precision", "bf16"]).precision == "bf16"  # still an option
    assert demo.build_parser().parse_args(["--input", "x", "--task", "denoise"]).precision == "auto"
