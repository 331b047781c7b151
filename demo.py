"""Restore your own photos with an instruction (TextPromptIR, arXiv 2312.06162, Sec. 3).

    python demo.py --ckpt ckpt/demo/last.pt --input photo.jpg --instruction "it was pouring, remove the rain"
    python demo.py --input photos/ --task denoise --output restored/ --compare
    python demo.py --input "shots/*.png" --instruction "clear the fog" --tile 512 --tile_overlap 32

The instruction is encoded once by the fine-tuned text encoder; every image is restored at
its own size (tiled when it would not fit in memory) and written to --output under the same
name. Grey, transparent, palette and 16-bit images come back as they went in.
"""
from __future__ import annotations

import argparse
import glob
import os
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

from net.text_encoder import validate_instruction
from options import FORMAT_EXTENSIONS, check_restore_options, demo_parser
from utils.cli import cli_main, refuse_replacing, writable_folder
from utils.data.image_io import PHOTO_EXTENSIONS
from utils.errors import UserError
from utils.progress import write
from utils.runtime.allocator import retain_freed_memory
from utils.runtime.engine import AUTO, RestorePlan, Restorer, failure_reason, load_restorer

COMPARE_GAP = 8  # white pixels between input and output in --compare pictures


def collect_inputs(spec: str) -> list[Path]:
    """Image files named by ``spec``: one file, the images of a folder, or a glob's images, each
    file once (a glob through a symlink loop finds one file under many names)."""
    path = Path(spec)
    if path.is_file():
        return [path]
    if path.is_dir():
        files = sorted(f for f in path.iterdir() if f.is_file() and f.suffix.lower() in PHOTO_EXTENSIONS)
        if not files:
            raise UserError(f"{spec}: no images in this folder ({', '.join(PHOTO_EXTENSIONS)}); "
                            "pass another --input")
        return files
    matches = sorted(Path(m) for m in glob.glob(spec, recursive=True))
    files = [f for f in matches if f.is_file() and f.suffix.lower() in PHOTO_EXTENSIONS]
    unique: dict[Path, Path] = {}
    for f in files:
        unique.setdefault(f.resolve(), f)  # keep each file's first name
    files = list(unique.values())
    if not files:
        raise UserError(f"{spec}: no such file or folder, and no image matches it as a glob; "
                        "pass a file, a folder or a quoted glob such as 'photos/*.jpg'")
    return files


def _file_id(path: Path) -> tuple[int, int] | None:
    """(device, inode) of an existing file, None otherwise."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def compare_path(dst: Path, src: Path, suffix: str) -> Path:
    """Where --compare puts the input | output picture of ``src`` beside its result ``dst``."""
    return dst.with_name(f"{src.stem}{suffix}_compare.png")


def choose_output_paths(inputs: list[Path], out_dir: Path, out_format: str, suffix: str,
                 compare: bool) -> dict[Path, Path]:
    """Output path of each input; refuses (UserError) an output folder that holds inputs.

    Paths are resolved (symlinks, ``..``) and existing files compared by identity (hard
    links), so no result can land on an input file. Two inputs with the same name (from a glob over several folders) are both
    restored only if their output names differ; later ones are dropped with a warning.
    """
    out_res = out_dir.resolve()
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"{out_dir}: --output is a file; pass a folder")
    if out_format == "same":
        for p in inputs:
            if p.suffix.lower() not in PHOTO_EXTENSIONS:
                raise UserError(f"{p}: results cannot be written as {p.suffix or 'a file without extension'} (what "
                                "--out_format same keeps); pass --out_format png (or jpg, tif)")
    in_res = {p.resolve() for p in inputs}
    for p in inputs:
        if p.resolve().parent == out_res:
            raise UserError(f"{out_dir}: the output folder holds the input images ({p}); pass another "
                            "--output so that no input is overwritten")
    output_paths: dict[Path, Path] = {}
    taken: dict[Path, Path] = {}
    in_files = {_file_id(p) for p in inputs}  # the same file under another name: a hard link
    for p in inputs:
        ext = p.suffix if out_format == "same" else FORMAT_EXTENSIONS[out_format]
        out = out_dir / f"{p.stem}{suffix}{ext}"
        names = [out] + ([compare_path(out, p, suffix)] if compare else [])
        if any(n.parent.resolve() != out_res for n in names):  # check_suffix keeps names in the folder
            raise UserError(f"{p}: its output {out} would leave --output {out_dir}; pass another --suffix")
        clash = next((taken[n.resolve()] for n in names if n.resolve() in taken), None)
        if clash is not None or any(n.resolve() in in_res or _file_id(n) in in_files for n in names):
            write(f"warning: {p}: skipped, its output {out} would overwrite "
                  f"{'the result of ' + str(clash) if clash else 'an input'}; restore it separately", error=True)
            continue
        for n in names:
            taken[n.resolve()] = p
        output_paths[p] = out
    return output_paths


def check_suffix(suffix: str) -> None:
    """A --suffix only extends a file name: it cannot name another folder."""
    if "/" in suffix or "\\" in suffix or ".." in suffix:
        raise UserError(f"--suffix {suffix!r}: it is added to each file name, so it cannot hold '/', '\\' "
                        "or '..'; use e.g. _restored")


def written_files(output_paths: dict[Path, Path], compare: bool, suffix: str) -> list[Path]:
    """Every file the run writes: each result and, with --compare, its side-by-side picture."""
    return [n for src, dst in output_paths.items()
            for n in [dst] + ([compare_path(dst, src, suffix)] if compare else [])]


def save_compare(path: Path, before: np.ndarray, after: np.ndarray, overwrite: bool) -> None:
    """input | output side by side, 8-bit PNG (replacing one already there only with ``overwrite``)."""
    from utils.data.image_io import save_photo

    gap = np.ones((before.shape[0], COMPARE_GAP, 3), np.float32)
    save_photo(path, np.concatenate([before, gap, after], axis=1), replace=overwrite)


def check_options(args: argparse.Namespace) -> None:
    if args.instruction is not None:
        validate_instruction(args.instruction)
    check_suffix(args.suffix)
    check_restore_options(args)


def show(plan: RestorePlan) -> None:
    """What was understood on stdout, warnings on stderr."""
    for line in plan.lines:
        print(line)
    for w in plan.warnings:
        print(f"warning: {w}", file=sys.stderr)


def restore_file(args: argparse.Namespace, restorer: Restorer, shown: list[str], src: Path, dst: Path) -> str:
    """Restore one photo into ``dst`` (and its --compare picture); returns the log line. What was
    understood is printed when it differs from the last photo's (``shown``)."""
    from utils.data.image_io import load_photo, save_photo

    photo = load_photo(src, args.max_pixels)
    plan = restorer.plan(args.instruction, args.task, photo.rgb, what=str(src))
    if plan.lines + plan.warnings != shown:
        show(plan)
        shown[:] = plan.lines + plan.warnings
    done = restorer.restore(photo.rgb, plan, progress=not args.no_progress, note=write)
    for line in done.lines:
        write(line)
    save_photo(dst, done.rgb, photo.alpha, photo.bit_depth, photo.grayscale, replace=args.overwrite)
    if args.compare:
        save_compare(compare_path(dst, src, args.suffix), photo.rgb, done.rgb, args.overwrite)
    h, w = done.rgb.shape[:2]
    how = "unchanged" if not plan.steps else f"{done.tile}px tiles" if done.tile else "whole"
    return f"{src} -> {dst} ({w}x{h}, {how})"


def demo_main(argv: Sequence[str] | None) -> int:
    from utils.progress import progress

    args = demo_parser().parse_args(argv)
    retain_freed_memory()  # no page faults on big CPU tensors (utils/runtime/allocator.py)
    check_options(args)
    out_dir = Path(args.output)
    inputs = collect_inputs(args.input)
    output_paths = choose_output_paths(inputs, out_dir, args.out_format, args.suffix, args.compare)
    if not args.overwrite:
        refuse_replacing(written_files(output_paths, args.compare, args.suffix), "another --output or --suffix")
    writable_folder(out_dir, "--output")
    restorer = load_restorer(args)
    shown: list[str] = []
    if args.instruction is not None or args.task not in (None, AUTO) or not restorer.reads_images:
        plan = restorer.plan(args.instruction, args.task)  # an off-topic request is refused before any photo
        show(plan)
        shown = plan.lines + plan.warnings
    ok, failed = 0, len(inputs) - len(output_paths)  # skipped: their output would overwrite something
    bar = progress(len(output_paths), "images", enabled=not args.no_progress)
    for src, dst in output_paths.items():
        try:
            write(restore_file(args, restorer, shown, src, dst))
            ok += 1
        except Exception as e:  # one bad image must not stop the batch: report it in one line
            write(f"error: {failure_reason(src, e)}", error=True)
            failed += 1
        bar.update(1)
    bar.close()
    print(f"summary: {ok} succeeded, {failed} failed; results in {out_dir}")
    return 0 if failed == 0 else 1


def main(argv: Sequence[str] | None = None) -> int:
    return cli_main(demo_main, argv)


if __name__ == "__main__":
    sys.exit(main())
