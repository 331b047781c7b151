"""Evaluate TextPromptIR on the paper's benchmarks (Sec. 4.2, Table 1 protocol).

    python test.py --ckpt ckpt/textpromptir/last.pt              # every set found under test/
    python test.py --mode derain --instruction "get rid of the rain"
    python test.py --instructions my_instructions.tsv             # instruction understanding only

Writes output/<run>/results.{json,csv,md} after every set (a later failure keeps what was
scored) and prints the table beside the paper's numbers.
"""
from __future__ import annotations

import csv
import json
import sys
from argparse import Namespace
from pathlib import Path
from typing import Sequence

import torch

from options import test_options
from utils.allocator import retain_freed_memory
from utils.cli import cli_main, writable_folder
from utils.errors import UserError, user_message
from utils.tables import cell, header, row

# TextPromptIR, Table 1 (three-task all-in-one setting), PSNR in dB.
PAPER_PSNR = {
    ("dehaze", "sots", None): 31.65,
    ("derain", "rain100l", None): 38.41,
    ("denoise", "cbsd68", 15): 34.17,
    ("denoise", "cbsd68", 25): 31.52,
    ("denoise", "cbsd68", 50): 28.26,
}
PAPER_AVERAGE = 32.80
PAPER_COLUMNS = [("dehaze", "sots", None, "SOTS"), ("derain", "rain100l", None, "Rain100L"),
                 ("denoise", "cbsd68", 15, "CBSD68 σ=15"), ("denoise", "cbsd68", 25, "CBSD68 σ=25"),
                 ("denoise", "cbsd68", 50, "CBSD68 σ=50")]


def paper_psnr(summary: dict) -> float | None:
    return PAPER_PSNR.get((summary["task"], summary["name"].lower(), summary["sigma"]))


def markdown_tables(summaries: list[dict]) -> str:
    """Per-set table (ours vs degraded input vs paper) and the paper's Table 1 row format."""
    lines = header(["Set", "Task", "Images", "Input PSNR / SSIM", "Ours PSNR / SSIM", "Gain (dB)", "Paper PSNR"], 2)
    for summary in summaries:
        lines.append(row([summary["label"], summary["task"], str(summary["n"]),
                          f"{cell(summary['input_psnr'])} / {cell(summary['input_ssim'], '.3f')}",
                          f"{cell(summary['psnr'])} / {cell(summary['ssim'], '.3f')}",
                          f"{summary['psnr'] - summary['input_psnr']:+.2f}", cell(paper_psnr(summary))]))
    by_key = {(summary["task"], summary["name"].lower(), summary["sigma"]): summary for summary in summaries}
    if any(k[:3] in by_key for k in PAPER_COLUMNS):
        ours = [by_key.get(k[:3], {}).get("psnr") for k in PAPER_COLUMNS]
        average = sum(ours) / len(ours) if all(v is not None for v in ours) else None
        lines += [""] + header(["Method", *(c[3] for c in PAPER_COLUMNS), "Average"])
        lines.append(row(["TextPromptIR (paper)", *(cell(PAPER_PSNR[c[:3]]) for c in PAPER_COLUMNS),
                          cell(PAPER_AVERAGE)]))
        lines.append(row(["ours", *(cell(v) for v in ours), cell(average)]))
    return "\n".join(lines)


def write_results(out_dir: Path, summaries: list[dict], rows: list[dict], args: Namespace) -> str:
    """results.json (per set), results.csv (per image) and results.md (the tables); returns the tables."""
    meta = dict(ckpt=str(args.ckpt), test_root=str(args.test_root), y_channel=args.y_channel,
                crop16=not args.no_crop16, instruction=args.instruction)
    sets = [{**summary, "paper_psnr": paper_psnr(summary)} for summary in summaries]
    (out_dir / "results.json").write_text(json.dumps(dict(meta=meta, sets=sets), indent=2))
    with open(out_dir / "results.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["set", "name", "psnr", "ssim", "input_psnr", "input_ssim"])
        writer.writeheader()
        writer.writerows(rows)
    tables = markdown_tables(summaries)
    (out_dir / "results.md").write_text(tables + "\n")
    return tables


def task_prompts(args: Namespace, ckpt: dict, tasks: set[str], text_dim: int) -> dict[str, torch.Tensor]:
    """Each task's instruction (``--instruction`` or the fixed one from the validation bank),
    encoded once by the encoder the checkpoint was trained with."""
    from utils.instruction_prompt import encoder_for_checkpoint, instruction_prompt, stored_default_prompts
    from utils.instructions import DEFAULT_INSTRUCTIONS

    stored = None if args.instruction else stored_default_prompts(args.ckpt, ckpt, args.text_ckpt)
    if stored is not None:
        return {task: stored[task] for task in tasks}
    encoder = encoder_for_checkpoint(args.ckpt, ckpt, text_dim, args.text_ckpt)
    return {task: instruction_prompt(encoder, args.instruction or DEFAULT_INSTRUCTIONS[task], f"{task}: ",
                                     None if args.instruction else task)
            for task in sorted(tasks)}


def evaluate_benchmarks(args: Namespace) -> int:
    from utils.checkpoint import load_for_inference
    from utils.datasets import EXPECTED_TEST_LAYOUT, find_test_sets
    from utils.evaluation import evaluate_set

    if args.instruction is not None:
        from net.text_encoder import validate_instruction

        validate_instruction(args.instruction)
    out_dir = writable_folder(Path(args.output_dir) / args.name, "--output_dir")
    sets, notes = find_test_sets(args.test_root, args.mode, crop16=not args.no_crop16)
    for line in notes:
        print(line)
    if not sets:
        raise UserError(f"{args.test_root}: no test set found; expected {EXPECTED_TEST_LAYOUT} (see test/README.md)")
    model, ckpt, device = load_for_inference(args.ckpt, args.device, args.impl, args.precision, args.compile,
                                             args.compile_cache)
    texts = {}
    if model.config.text_cond != "none":
        texts = task_prompts(args, ckpt, {test_set.task for test_set in sets}, model.config.text_dim)
    summaries, rows = [], []
    for test_set in sets:
        save_dir = out_dir / "images" / test_set.label.replace(" ", "_").replace("=", "") if args.save_images else None
        try:
            score, _ = evaluate_set(model, test_set, texts.get(test_set.task), device, precision=args.precision,
                                    y_channel=args.y_channel, save_dir=save_dir, progress=not args.no_progress,
                                    num_workers=args.num_workers)
        except UserError as e:
            kept = f" (the {len(summaries)} sets scored before are in {out_dir}/results.*)" if summaries else ""
            raise UserError(user_message(e) + kept) from None
        summary = score.summary()
        print(f"{summary['label']}: PSNR {summary['psnr']:.2f} dB / SSIM {summary['ssim']:.4f} "
              f"(input {summary['input_psnr']:.2f} / {summary['input_ssim']:.4f}, {summary['n']} images)")
        summaries.append(summary)
        rows += score.rows()
        tables = write_results(out_dir, summaries, rows, args)
    print()
    print(tables)
    print(f"\nresults written to {out_dir}/results.{{json,csv,md}}")
    return 0


def test_main(argv: Sequence[str] | None) -> int:
    args = test_options(argv)
    retain_freed_memory()  # no page faults on big CPU tensors (utils/allocator.py)
    if args.instructions:
        from net.text_encoder import InstructionEncoder
        from utils.instruction_prompt import DEFAULT_TEXT_CKPT
        from utils.instruction_report import instruction_report

        report, _ = instruction_report(args.instructions, InstructionEncoder.load(args.text_ckpt or DEFAULT_TEXT_CKPT))
        print(report)
        return 0
    return evaluate_benchmarks(args)


def main(argv: Sequence[str] | None = None) -> int:
    return cli_main(test_main, argv)


if __name__ == "__main__":
    sys.exit(main())
