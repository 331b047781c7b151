"""train.py --time_budget and --save_at: the run stops at its budget and saves, the schedule is
planned for the steps the budget allows and ends at 0, resume keeps the plan, bad values are one line."""
from __future__ import annotations

import pytest
import torch

import train
from tests.conftest import TINY_NET
from utils.train.budget import (
    MEASURE_SKIP,
    MEASURE_STEPS,
    Budget,
    TrainClock,
    measuring_scheduler,
    plan_steps,
    planned_scheduler,
)

MEASURED_AT = 1 + MEASURE_SKIP + MEASURE_STEPS  # the step at which a session plans its schedule


def budget_args(layout, text_ckpt, tmp, run: str, minutes: str = "0.05") -> list[str]:
    return ["--data_root", str(layout / "Train"), "--text_ckpt", str(text_ckpt), *TINY_NET,
            "--patch_size", "16", "--batch_size", "2", "--num_workers", "0", "--epochs", "10",
            "--warmup_epochs", "1", "--lr", "1e-3", "--ckpt_dir", str(tmp / "ckpt"),
            "--log_dir", str(tmp / "logs"), "--name", run, "--device", "cpu", "--no_progress",
            "--log_every", "1", "--save_every", "0", "--val_every", "0", "--time_budget", minutes,
            "--classifier_steps", "0",
            "--repeat", "denoise_15=1", "denoise_25=1", "denoise_50=1", "derain=1", "dehaze=1"]


def lrs(scheduler, steps: int) -> list[float]:
    out = []
    for _ in range(steps):
        out.append(float(scheduler.get_last_lr()[0]))
        scheduler.optimizer.step()
        scheduler.step()
    return out


def optimizer(lr: float = 1e-3) -> torch.optim.Optimizer:
    return torch.optim.AdamW([torch.nn.Parameter(torch.zeros(2))], lr=lr)


def test_the_plan_fits_the_steps_the_budget_allows_and_ends_at_zero():
    plan = Budget(minutes=1.0, warmup_share=0.1)
    plan_steps(plan, step=12, spent_s=6.0, step_s=0.5)  # 54 s left at 0.5 s per step: 108 more
    assert (plan.total_steps, plan.warmup_steps, plan.planned_at) == (120, 12, 12)
    seq = lrs(planned_scheduler(optimizer(), plan), plan.total_steps + 1)
    assert max(seq) == pytest.approx(1e-3, rel=1e-6) and seq.index(max(seq)) == plan.warmup_steps
    assert seq[plan.total_steps] == pytest.approx(0.0, abs=1e-12)  # 0 at the planned last step
    assert seq[plan.total_steps - 1] > 0


def test_planning_mid_run_gives_the_plans_own_learning_rates():
    """Planned at step 12 after the measuring phase, or built at step 0 from the same plan: the same
    learning rate for every step from 12 on, also for a tensor learning rate (a CUDA graph's)."""
    plan = Budget(minutes=1.0, warmup_share=0.2)
    plan_steps(plan, step=12, spent_s=0.0, step_s=1.0)
    fresh = lrs(planned_scheduler(optimizer(), plan), plan.total_steps)
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(2))], lr=torch.tensor(1e-3))
    lr_tensor = opt.param_groups[0]["lr"]
    measuring = measuring_scheduler(opt)
    assert lrs(measuring, 12) == pytest.approx([1e-6] * 12)
    late = lrs(planned_scheduler(opt, plan, done_steps=12), plan.total_steps - 12)
    assert late == pytest.approx(fresh[12:], rel=1e-6, abs=1e-12)
    assert opt.param_groups[0]["lr"] is lr_tensor  # changed in place


def test_the_clock_counts_only_the_time_it_runs():
    clock = TrainClock()
    clock.start()
    clock.pause()
    first = clock.elapsed()
    assert clock.elapsed() == first  # paused: nothing more counts
    clock.add_apart("validation", 2.0)
    assert clock.apart_s == {"validation": 2.0} and first < 1.0


def test_a_time_budget_run_stops_near_its_budget_saves_and_keeps_fraction_checkpoints(tiny_layout, text_ckpt,
                                                                                          tmp_path, capsys):
    args = budget_args(tiny_layout, text_ckpt, tmp_path, "budget", "0.4") + ["--save_at", "0.25", "0.5", "1"]
    assert train.main(args) == 0
    out = capsys.readouterr().out
    run = tmp_path / "ckpt/budget"
    last = torch.load(run / "last.pt", weights_only=True)
    budget = last["budget"]
    assert budget["total_steps"] > MEASURED_AT and budget["planned_at"] == MEASURED_AT
    # 24 s (long enough for more steps than the 13 that measure the rate, also on a loaded CPU): stopped
    # at the plan's last step or on time, within a few steps of it (the rate varies on a shared CPU, so
    # the plan's end may come early)
    assert 0.5 * 24.0 < budget["trained_s"] < 24.0 + 3 * budget["step_s"] + 0.5
    assert last["step"] == budget["total_steps"] or budget["trained_s"] >= 24.0
    assert "time budget 0.4 min: step" in out and "images seen" in out and "first step" in out
    for f in ("0.25", "0.5", "1"):
        assert (run / f"at_{f}.pt").is_file()
    quarter = torch.load(run / "at_0.25.pt", weights_only=True)
    assert quarter["step"] == max(round(0.25 * budget["total_steps"]), MEASURED_AT)
    assert torch.load(run / "at_1.pt", weights_only=True)["step"] == last["step"]
    if last["step"] == budget["total_steps"]:  # the plan's end: the learning rate reached 0
        assert last["optimizer"]["param_groups"][0]["lr"] == pytest.approx(0.0, abs=1e-12)


def test_resume_keeps_the_plan_and_its_learning_rates(tiny_layout, text_ckpt, tmp_path, capsys):
    """Interrupted after the plan (--max_steps), resumed with another --time_budget: the plan is kept
    and the learning rate at every step is the plan's."""
    args = budget_args(tiny_layout, text_ckpt, tmp_path, "split", "0.5")
    assert train.main(args + ["--max_steps", str(MEASURED_AT + 3)]) == 0
    first = torch.load(tmp_path / "ckpt/split/last.pt", weights_only=True)
    plan = Budget.from_dict(first["budget"])
    assert plan.planned and first["step"] == MEASURED_AT + 3
    capsys.readouterr()
    resumed = budget_args(tiny_layout, text_ckpt, tmp_path, "split", "5")
    assert train.main(resumed + ["--resume", "--max_steps", str(MEASURED_AT + 6)]) == 0
    err = capsys.readouterr().err
    assert "--time_budget 5 ignored" in err
    second = torch.load(tmp_path / "ckpt/split/last.pt", weights_only=True)
    assert Budget.from_dict(second["budget"]).total_steps == plan.total_steps
    assert second["budget"]["trained_s"] > first["budget"]["trained_s"]
    # the learning rates of an uninterrupted run of the same plan, step by step
    straight = lrs(planned_scheduler(optimizer(), plan), plan.total_steps + 1)
    for ck in (first, second):
        assert ck["optimizer"]["param_groups"][0]["lr"] == pytest.approx(straight[ck["step"]], rel=1e-6, abs=1e-12)
        assert ck["scheduler"]["last_epoch"] == ck["step"]


def test_resuming_an_epochs_run_with_a_time_budget_is_one_line(tiny_layout, text_ckpt, tmp_path, capsys):
    args = budget_args(tiny_layout, text_ckpt, tmp_path, "epochs_run")
    no_budget = args[:args.index("--time_budget")] + args[args.index("--time_budget") + 2:]
    assert train.main(no_budget + ["--max_steps", "2"]) == 0
    capsys.readouterr()
    assert train.main(args + ["--resume"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "planned for --epochs" in err and "Traceback" not in err


@pytest.mark.parametrize("flag, value, said", [("--time_budget", "0", "above 0"), ("--time_budget", "ten", "not a number"),
                                               ("--save_at", "1.5", "at most 1"), ("--save_at", "0", "above 0")])
def test_bad_budget_values_are_one_line(tiny_layout, text_ckpt, tmp_path, capsys, flag, value, said):
    args = budget_args(tiny_layout, text_ckpt, tmp_path, "bad") + [flag, value]
    assert train.main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and said in err and flag in err


def test_a_budget_spent_before_its_rate_is_measured_keeps_its_end_and_names_the_fractions_not_written(
        tiny_layout, text_ckpt, tmp_path, capsys):
    args = budget_args(tiny_layout, text_ckpt, tmp_path, "short", "0.001") + ["--save_at", "0.25", "0.5", "1"]
    assert train.main(args) == 0
    out = capsys.readouterr().out
    run = tmp_path / "ckpt/short"
    last = torch.load(run / "last.pt", weights_only=True)
    assert not Budget.from_dict(last["budget"]).planned  # 0.06 s: spent before the rate was measured
    assert torch.load(run / "at_1.pt", weights_only=True)["step"] == last["step"]  # the budget's end
    assert not (run / "at_0.25.pt").exists() and not (run / "at_0.5.pt").exists()
    said = [line for line in out.splitlines() if line.startswith("--save_at")]
    assert len(said) == 1 and "at_0.25.pt, at_0.5.pt not written" in said[0] and "step rate" in said[0]


def test_fractions_past_max_steps_are_named_as_not_written(tiny_layout, text_ckpt, tmp_path, capsys):
    args = budget_args(tiny_layout, text_ckpt, tmp_path, "epochs_frac")
    args = args[:args.index("--time_budget")] + args[args.index("--time_budget") + 2:]
    # 10 epochs of 9 steps: 0.01 falls at step 1, 0.5 at step 45 and 1 at step 90
    assert train.main(args + ["--save_at", "0.01", "0.5", "1", "--max_steps", "2"]) == 0
    out = capsys.readouterr().out
    run = tmp_path / "ckpt/epochs_frac"
    assert torch.load(run / "at_0.01.pt", weights_only=True)["step"] == 1
    said = [line for line in out.splitlines() if line.startswith("--save_at")]
    assert len(said) == 1 and "at_0.5.pt, at_1.pt not written" in said[0] and "--max_steps 2" in said[0]
    assert "(45, 90)" in said[0]
