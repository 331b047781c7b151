"""Evaluate TextPromptIR on the paper's benchmarks (Sec. 4.2, Table 1 protocol).

    python test.py --ckpt ckpt/textpromptir/last.pt              # every set found under test/
    python test.py --mode derain --instruction "get rid of the rain"
    python test.py --instructions my_instructions.tsv             # instruction understanding only
    python test.py --instructions data/instructions/compound_heldout.tsv --unrelated data/instructions/unrelated_heldout.txt

Adds the sets it scores to output/<run>/results.{json,csv,md} after every set (a later failure
keeps what was scored; nothing already there is replaced without --overwrite; runs under one --name
at once each keep their rows, see utils/eval/results.py) and prints the tables beside the paper's
numbers. A set of a task the checkpoint was not trained for is skipped in one line, never scored.
"""
from __future__ import annotations

import copy
import sys
from argparse import Namespace
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, Sequence

import torch

from options import check_test_paths, test_options
from utils.cli import cli_main, refuse_replacing, writable_folder
from utils.errors import UserError, user_message
from utils.full_disk import DiskFull, naming_full_disk
from utils.runtime.allocator import retain_freed_memory
from utils.stop_signals import StopSignals


def task_embeddings(args: Namespace, ckpt: dict, tasks: set[str], text_dim: int) -> dict[str, torch.Tensor]:
    """Each task's instruction (``--instruction`` or the fixed one from the validation bank),
    encoded once by the encoder the checkpoint was trained with."""
    from utils.text.bank import DEFAULT_INSTRUCTIONS
    from utils.text.encoder_link import encoder_for_checkpoint, instruction_embedding, stored_default_embeddings

    stored = None if args.instruction else stored_default_embeddings(args.ckpt, ckpt, args.text_ckpt)
    if stored is not None:
        return {task: stored[task] for task in tasks}
    encoder = encoder_for_checkpoint(args.ckpt, ckpt, text_dim, args.text_ckpt)
    return {task: instruction_embedding(encoder, args.instruction or DEFAULT_INSTRUCTIONS[task], f"{task}: ",
                                        None if args.instruction else task)
            for task in sorted(tasks)}


def image_folders(root: Path, sets: list) -> dict[tuple[str, str], Path]:
    """Where --save_images puts each row's images: a folder named after the set ("CBSD68_σ25"), with
    the task in front where two tasks' sets share a name (the demo sets)."""
    def name(label: str) -> str:
        return label.replace(" ", "_").replace("=", "").replace(",", "")

    shared = {s.label for s in sets if sum(t.label == s.label for t in sets) > 1}
    return {(s.task, s.label): root / (f"{s.task}_{name(s.label)}" if s.label in shared else name(s.label))
            for s in sets}


def scoring_rows(sets: list, order: Sequence[str], conditioned: bool,
                 alone: bool = True) -> list[tuple[Any, tuple[str, ...] | None]]:
    """Each row to score, as (set, the tasks its passes remove, in order; None: one pass with the set's
    own task). A composite set is its tasks one after another in ``order``, then (``alone``) each of
    its tasks alone, as rows "<set>, <task> only", to show what the sequence gains."""
    from utils.tasks import COMPOSITE, restore_order

    rows: list[tuple[Any, tuple[str, ...] | None]] = []
    for test_set in sets:
        if test_set.task != COMPOSITE or not conditioned:  # a plain Restormer: one pass, nothing to tell it
            rows.append((test_set, None))
            continue
        rows.append((test_set, restore_order(test_set.tasks, order)))
        for task in test_set.tasks if alone else ():
            single = copy.copy(test_set)
            single.label = f"{test_set.label}, {task} only"
            rows.append((single, (task,)))
    return rows


def trained_sets(ckpt_path: str, ckpt: dict, sets: list) -> list:
    """The sets of tasks the checkpoint was trained for. Each other set is skipped in one line: a
    benchmark number for a task the network never learned means nothing, beside published ones least."""
    from utils.text.encoder_link import checkpoint_tasks
    from utils.text.understand import untrained_tasks

    known = checkpoint_tasks(ckpt)
    kept = []
    for test_set in sets:
        untrained = untrained_tasks(ckpt_path, known, test_set.tasks)
        if untrained is None:
            kept.append(test_set)
        else:
            print(f"skipped {test_set.label}: {untrained}, so it is not scored")
    if not kept:
        raise UserError(f"{ckpt_path}: none of the sets found is of a task it was trained for ({', '.join(known)}); "
                        "pass --mode with one of those, or a checkpoint trained for the sets' tasks")
    return kept


def blind_classifier(ckpt_path: str, ckpt: dict, unconditioned: bool) -> torch.nn.Module:
    """The checkpoint's degradation classifier, or the one line saying it has none."""
    from utils.checkpoint import load_classifier

    classifier = None if unconditioned else load_classifier(ckpt, ckpt_path)
    if classifier is None:
        raise UserError(f"{ckpt_path}: --blind needs a checkpoint that can read images, and this one has no "
                        f"degradation classifier; add one with `python train.py --stage classifier --resume "
                        f"{ckpt_path}`")
    return classifier


def blind_reader(classifier: torch.nn.Module, ckpt: dict):
    """An image (H, W, 3 floats) -> the tasks the classifier sees in it that the checkpoint restores."""
    from utils.runtime.engine import read_degradations, seen_tasks
    from utils.text.encoder_link import checkpoint_tasks

    known = checkpoint_tasks(ckpt)
    return lambda rgb: seen_tasks(read_degradations(classifier, rgb), known)


def blind_report(sets: list[dict], blind: Any) -> str:
    """Each set's PSNR by the instruction route (where scored) and the blind route, with how often the
    blind route read the set's degradations exactly, and the confusion over every image."""
    from utils.eval.results import PROTOCOL_FIELDS
    from utils.tables import cell, header, row

    same = {k: getattr(blind, k) for k in PROTOCOL_FIELDS if k not in ("route", "instruction")}
    of = {(s["task"], s["label"], s["route"]): s for s in sets if all(s.get(k) == v for k, v in same.items())
          and s.get("instruction") is None}
    lines = header(["Set", "Instruction route PSNR", "Blind route PSNR", "Read exactly"])
    total: dict[str, dict[str, int]] = {}
    for (task, label, route), s in of.items():
        if route != "blind":
            continue
        instruction_psnr = of.get((task, label, "instruction"), {}).get("psnr")
        lines.append(row([label, cell(instruction_psnr), cell(s["psnr"]), f"{s['blind']['exact_set']:.0%}"]))
        for truth, reads in s["blind"]["confusion"].items():
            for read, n in reads.items():
                total.setdefault(truth, {})[read] = total.setdefault(truth, {}).get(read, 0) + n
    cols = sorted({r for reads in total.values() for r in reads})
    lines += ["", "blind route, what each set's images were read as (rows: true, columns: read):"]
    lines += header(["true \\ read", *cols]) + [row([t, *(str(r.get(c, 0)) for c in cols)]) for t, r in total.items()]
    return "\n".join(lines)


def preset_hint(args: Namespace) -> str:
    """When the checkpoint was trained with a preset that has its own test set (the demo's) and this run
    looks elsewhere, the command that scores that set; empty otherwise (or when the checkpoint is unreadable,
    which loading it reports next)."""
    from utils.checkpoint import load_checkpoint
    from utils.recipe import PAPER, preset_value

    try:
        preset = (load_checkpoint(args.ckpt).get("options") or {}).get("preset")
    except UserError:
        return ""
    root = preset_value(preset, "test_root", "test") if isinstance(preset, str) and preset != PAPER else None
    if preset == args.preset or not root or Path(root) == Path(args.test_root):
        return ""
    return (f"; {args.ckpt} was trained with --preset {preset}, whose test set is {root}: "
            f"python test.py --preset {preset} --ckpt {args.ckpt}")


def evaluate_benchmarks(args: Namespace) -> int:
    from utils.data.layouts import EXPECTED_TEST_LAYOUT
    from utils.digest import weights_sha256
    from utils.eval.benchmarks import find_test_sets
    from utils.eval.evaluate import saved_image_paths
    from utils.eval.results import Protocol, Results
    from utils.eval.routes import BlindRoute
    from utils.runtime.device import resolve_precision
    from utils.runtime.inference import load_for_inference

    if args.instruction is not None:
        from net.text_encoder import validate_instruction

        validate_instruction(args.instruction)
    out_dir = writable_folder(Path(args.output_dir) / args.name, "--output_dir")
    sets, notes = find_test_sets(args.test_root, args.mode, crop16=not args.no_crop16, max_pixels=args.max_pixels,
                                 denoise_dirs=args.denoise_dirs)
    for line in notes:
        print(line)
    if not sets:
        raise UserError(f"{args.test_root}: no test set found; expected {EXPECTED_TEST_LAYOUT} (see test/README.md)"
                        + preset_hint(args))
    model, ckpt, device = load_for_inference(args.ckpt, args.device, args.impl, args.precision, args.compile,
                                             args.compile_cache)
    sets = trained_sets(args.ckpt, ckpt, sets)
    results = Results.open(out_dir, args.ckpt, args.overwrite, weights_sha256(ckpt["model"]))
    unconditioned = model.config.text_cond == "none"
    protocol = Protocol(route="unconditioned" if unconditioned else "instruction",
                        instruction=None if unconditioned else args.instruction,
                        precision=resolve_precision(device, args.precision)[0],
                        y_channel=args.y_channel, crop16=not args.no_crop16)
    blind = None
    if args.blind:
        blind = blind_classifier(args.ckpt, ckpt, unconditioned)
        protocol = replace(protocol, route="blind")
    rows = scoring_rows(sets, args.order, not unconditioned, alone=blind is None)
    save_dirs = image_folders(out_dir / "images", [test_set for test_set, _ in rows]) if args.save_images else {}
    if not args.overwrite:  # nothing already written is replaced: checked before any image is scored
        results.refuse_replacing([(test_set.task, test_set.label) for test_set, _ in rows], protocol)
        refuse_replacing([p for test_set, _ in rows if (test_set.task, test_set.label) in save_dirs
                          for p in saved_image_paths(save_dirs[test_set.task, test_set.label], test_set)],
                         "another --name")
    embeddings = {}
    if not unconditioned:
        tasks = set(blind.labels) if blind is not None else {t for ts, _ in rows for t in ts.tasks}
        embeddings = task_embeddings(args, ckpt, tasks, model.config.text_dim)
    route = BlindRoute(model, blind_reader(blind, ckpt), embeddings, args.order) if blind else None
    tables = score_rows(args, rows, model, embeddings, route, device, results, protocol, save_dirs, out_dir)
    print()
    print(tables)
    if route is not None:
        print("\n" + blind_report(results.sets, protocol))
    print(f"\nresults written to {out_dir}/results.{{json,csv,md}}")
    return 0


def score_rows(args: Namespace, rows: list, model: torch.nn.Module, embeddings: dict[str, torch.Tensor],
               route: Any, device: torch.device, results: Any, protocol: Any, save_dirs: dict, out_dir: Path) -> str:
    """Score each row, adding it to the results files as it is done; returns the markdown tables.
    ``route``: the blind route (``utils.eval.routes.BlindRoute``), else each row's own tasks decide."""
    from utils.eval.evaluate import evaluate_set
    from utils.eval.routes import TaskChain, confusion, exact_set_accuracy
    from utils.tasks import join_tasks

    tables = ""
    for scored, (test_set, steps) in enumerate(rows):
        if route is not None:
            route.predictions.clear()
        net = route or (model if steps is None else TaskChain(model, [embeddings[t] for t in steps]))
        no_room = f"free some space there or pass another --output_dir{kept_line(scored, out_dir)}"
        try:
            with naming_full_disk(out_dir, "the restored images (--save_images)", no_room):
                score, _ = evaluate_set(net, test_set, None if steps or route else embeddings.get(test_set.task),
                                        device, precision=args.precision, y_channel=args.y_channel,
                                        save_dir=save_dirs.get((test_set.task, test_set.label)),
                                        progress=not args.no_progress, num_workers=args.num_workers,
                                        overwrite=args.overwrite)
        except DiskFull:
            raise
        except UserError as e:
            kept = f" (the {scored} sets scored before are in {out_dir}/results.*)" if scored else ""
            raise UserError(user_message(e) + kept) from None
        except KeyboardInterrupt:  # Ctrl-C or SIGTERM (utils/stop_signals.py): the sets scored are kept
            print(f"\nstopped while scoring {test_set.label}; the {scored} sets scored before are in "
                  f"{out_dir}/results.*", file=sys.stderr)
            raise
        summary = score.summary()
        images = [asdict(image) for image in score.images]
        read = ""
        if route is not None:
            for image, tasks in zip(images, route.predictions):  # one prediction per image, in order
                image["read_as"] = join_tasks(tasks)
            truth = [test_set.tasks] * len(route.predictions)
            summary["blind"] = {"exact_set": exact_set_accuracy(truth, route.predictions),
                                "confusion": confusion(truth, route.predictions)}
            read = f"; read as {test_set.tasks and '+'.join(test_set.tasks)} in {summary['blind']['exact_set']:.0%}"
        print(f"{summary['label']}: PSNR {summary['psnr']:.2f} dB / SSIM {summary['ssim']:.4f} "
              f"(input {summary['input_psnr']:.2f} / {summary['input_ssim']:.4f}, {summary['n']} images){read}")
        results.put(summary, images, protocol, args.test_root)
        with naming_full_disk(out_dir, "the results", no_room):
            tables = results.write()
    return tables


def kept_line(scored: int, out_dir: Path) -> str:
    return f"; the {scored} sets scored before are kept in {out_dir}/results.*" if scored else ""


def test_main(argv: Sequence[str] | None) -> int:
    args = test_options(argv)
    check_test_paths(args)
    if args.check_data:
        from utils.data.check import check_test_data, print_report

        return print_report(check_test_data(args.test_root, args.mode))
    retain_freed_memory()  # no page faults on big CPU tensors (utils/runtime/allocator.py)
    with StopSignals("test.py adds each set to the results files as soon as it is scored; going on"):
        return run_test(args)


def run_test(args: Namespace) -> int:
    """Instruction understanding (--instructions / --unrelated), or the benchmarks."""
    if args.instructions or args.unrelated:
        from net.text_encoder import InstructionEncoder
        from utils.text.encoder_link import DEFAULT_TEXT_CKPT
        from utils.text.report import instruction_report

        report, _ = instruction_report(args.instructions, InstructionEncoder.load(args.text_ckpt or DEFAULT_TEXT_CKPT),
                                       args.unrelated)
        print(report)
        return 0
    return evaluate_benchmarks(args)


def main(argv: Sequence[str] | None = None) -> int:
    return cli_main(test_main, argv)


if __name__ == "__main__":
    sys.exit(main())
