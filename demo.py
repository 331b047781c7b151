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
import sys
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from net.text_encoder import TASKS, validate_instruction
from utils.allocator import retain_freed_memory
from utils.errors import UserError

INPUT_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
FORMAT_EXTENSIONS = {"png": ".png", "jpg": ".jpg", "tif": ".tif"}
COMPARE_GAP = 8  # white pixels between input and output in --compare pictures


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Restore your own photos with TextPromptIR: say what is wrong, get the fixed images.")
    p.add_argument("--ckpt", default="ckpt/demo/last.pt",
                   help="restoration checkpoint written by train.py (default: %(default)s)")
    p.add_argument("--input", required=True,
                   help="an image file, a folder of images (not recursive) or a quoted glob such as 'shots/*.jpg'")
    p.add_argument("--output", default="output/demo",
                   help="folder for the restored images (same file names); must not be the input folder (default: %(default)s)")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--instruction", help="what is wrong with the photos, in your own words, "
                      "e.g. \"it was pouring, remove the rain\"")
    what.add_argument("--task", choices=TASKS,
                      help="force a task by name and use its default instruction")
    p.add_argument("--text_ckpt", default=None,
                   help="fine-tuned instruction-encoder folder (default: the one recorded in the checkpoint, "
                        "else ckpt/text_encoder)")
    p.add_argument("--tile", type=int, default=None,
                   help="restore in TILE×TILE tiles (a multiple of 8); 0 never tiles; default: tile only "
                        "when the whole image would not fit the memory budget")
    p.add_argument("--tile_overlap", type=int, default=32,
                   help="pixels shared by neighbouring tiles, blended with raised-cosine weights (default: %(default)s)")
    p.add_argument("--max_memory", type=float, default=None,
                   help="memory budget in GiB for one forward, used to choose the tile size automatically "
                        "(default: half of the available RAM on CPU, 80%% of the free GPU memory on CUDA)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="auto (default) uses CUDA when present")
    p.add_argument("--amp", action="store_true", help="bf16 autocast on CUDA (ignored on CPU)")
    p.add_argument("--out_format", choices=("same",) + tuple(FORMAT_EXTENSIONS), default="same",
                   help="file format of the results; 'same' keeps each input's format. PNG/TIFF keep "
                        "16 bits and transparency, JPEG is 8-bit and drops transparency (default: same)")
    p.add_argument("--suffix", default="", help="appended to each output file name, e.g. _restored")
    p.add_argument("--compare", action="store_true",
                   help="also write <name>_compare.png: input | output side by side")
    p.add_argument("--no_progress", action="store_true", help="no progress bars")
    return p


def collect_inputs(spec: str) -> list[Path]:
    """Image files named by ``spec``: one file, the images of a folder, or a glob's images."""
    path = Path(spec)
    if path.is_file():
        return [path]
    if path.is_dir():
        files = sorted(f for f in path.iterdir() if f.is_file() and f.suffix.lower() in INPUT_EXTENSIONS)
        if not files:
            raise UserError(f"{spec}: no images in this folder ({', '.join(INPUT_EXTENSIONS)}); "
                            "pass another --input")
        return files
    matches = sorted(Path(m) for m in glob.glob(spec, recursive=True))
    files = [f for f in matches if f.is_file() and f.suffix.lower() in INPUT_EXTENSIONS]
    if not files:
        raise UserError(f"{spec}: no such file or folder, and no image matches it as a glob; "
                        "pass a file, a folder or a quoted glob such as 'photos/*.jpg'")
    return files


def plan_outputs(inputs: list[Path], out_dir: Path, out_format: str, suffix: str,
                 compare: bool) -> dict[Path, Path]:
    """Output path of each input; refuses (UserError) an output folder that holds inputs.

    Paths are resolved (symlinks, ``..``) before comparing, so no result can land on an
    input file. Two inputs with the same name (from a glob over several folders) are both
    restored only if their output names differ; later ones are dropped with a warning.
    """
    out_res = out_dir.resolve()
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"{out_dir}: --output is a file; pass a folder")
    in_res = {p.resolve() for p in inputs}
    for p in inputs:
        if p.resolve().parent == out_res:
            raise UserError(f"{out_dir}: the output folder holds the input images ({p}); pass another "
                            "--output so that no input is overwritten")
    plan: dict[Path, Path] = {}
    taken: dict[Path, Path] = {}
    for p in inputs:
        ext = p.suffix if out_format == "same" else FORMAT_EXTENSIONS[out_format]
        out = out_dir / f"{p.stem}{suffix}{ext}"
        names = [out] + ([out_dir / f"{p.stem}{suffix}_compare.png"] if compare else [])
        clash = next((taken[n.resolve()] for n in names if n.resolve() in taken), None)
        if clash is not None or any(n.resolve() in in_res for n in names):
            tqdm.write(f"warning: {p}: skipped, its output {out} would overwrite "
                       f"{'the result of ' + str(clash) if clash else 'an input'}; restore it separately",
                       file=sys.stderr)
            continue
        for n in names:
            taken[n.resolve()] = p
        plan[p] = out
    return plan


def load_instruction(args: argparse.Namespace, ckpt: dict, text_dim: int) -> torch.Tensor:
    """Encode the instruction once with the fine-tuned encoder and tell the user what it
    understood (task, confidence, warnings). Returns the (1, text_dim) prompt."""
    from net.text_encoder import InstructionEncoder
    from utils.instructions import DEFAULT_INSTRUCTIONS

    text_dir = args.text_ckpt or (ckpt.get("text_encoder") or {}).get("dir") or "ckpt/text_encoder"
    try:
        encoder = InstructionEncoder.load(text_dir)
    except UserError as e:
        raise UserError(f"{e} (or pass --text_ckpt with the encoder folder used in training)") from None
    if encoder.hidden_size != text_dim:
        raise UserError(f"{text_dir}: this encoder gives {encoder.hidden_size}-d embeddings but {args.ckpt} "
                        f"expects {text_dim}-d; pass the --text_ckpt used in training")
    instruction = DEFAULT_INSTRUCTIONS[args.task] if args.task else args.instruction
    it = encoder.interpret(instruction)
    forced = f" (forced with --task {args.task})" if args.task else ""
    print(f"instruction: \"{instruction}\"{forced}")
    print(f"understood as: {it.task} (confidence {it.confidence:.2f}; "
          + ", ".join(f"{t} {p:.2f}" for t, p in it.probs.items()) + ")")
    for w in it.warnings:
        print(f"warning: {w}", file=sys.stderr)
    if args.task and it.task != args.task:
        print(f"warning: the encoder reads the default {args.task} instruction as {it.task}; "
              f"was {text_dir} trained for this checkpoint?", file=sys.stderr)
    return it.embedding.float()[None]  # (1, text_dim)


def autocast_for(device: torch.device, amp: bool):
    """bf16 autocast on CUDA when asked; a disabled context otherwise."""
    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp and device.type == "cuda")


def _is_oom(e: BaseException) -> bool:
    return isinstance(e, torch.OutOfMemoryError) or (
        isinstance(e, RuntimeError) and ("out of memory" in str(e) or "can't allocate memory" in str(e)))


def restore(model: torch.nn.Module, rgb: np.ndarray, text: torch.Tensor, device: torch.device, tile: int | None,
            overlap: int, amp: bool, budget: int | None, progress: bool) -> tuple[np.ndarray, int | None]:
    """Restore one HxWx3 float image; returns the result and the tile size used (None: whole).

    ``tile=None`` chooses from the memory budget; a run that still runs out of memory is
    retried with tiles half as large (down to 64 px).
    """
    from utils.tiling import MIN_TILE, auto_tile_size, restore_tiled

    img = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None]  # (1, 3, H, W)
    h, w = img.shape[-2:]
    auto = tile is None
    if auto:
        tile = auto_tile_size(h, w, model.model_args, device, budget)
    elif tile == 0 or tile >= max(h, w):
        tile = None
    while True:
        try:
            with torch.inference_mode(), autocast_for(device, amp):
                if tile is None:
                    out = model(img.to(device), text.to(device)).float().cpu()
                else:
                    out = restore_tiled(model, img, text, tile, min(overlap, tile // 2), progress=progress)
            break
        except (torch.OutOfMemoryError, RuntimeError) as e:
            if not (_is_oom(e) and auto) or (tile is not None and tile <= MIN_TILE):
                raise
            if device.type == "cuda":
                torch.cuda.empty_cache()
            tile = max(MIN_TILE, (min(tile or max(h, w), max(h, w)) // 2) // 8 * 8)
            tqdm.write(f"note: out of memory, retrying with {tile}px tiles")
    return out[0].permute(1, 2, 0).clamp(0, 1).numpy(), tile  # (H, W, 3)


def save_compare(path: Path, before: np.ndarray, after: np.ndarray) -> None:
    """input | output side by side, 8-bit PNG."""
    from utils.image_io import save_photo

    gap = np.ones((before.shape[0], COMPARE_GAP, 3), np.float32)
    save_photo(path, np.concatenate([before, gap, after], axis=1))


def run(args: argparse.Namespace) -> int:
    from utils.checkpoint import load_model
    from utils.dist import pick_device
    from utils.image_io import load_photo, save_photo

    if args.instruction is not None:
        validate_instruction(args.instruction)
    if args.tile is not None and (args.tile < 0 or args.tile % 8):
        raise UserError(f"--tile {args.tile}: use 0 (never tile) or a positive multiple of 8, e.g. 512")
    if args.tile_overlap < 0 or (args.tile and args.tile_overlap * 2 > args.tile):
        raise UserError(f"--tile_overlap {args.tile_overlap}: use 0..tile/2 (e.g. 32 for --tile 512)")
    out_dir = Path(args.output)
    inputs = collect_inputs(args.input)
    plan = plan_outputs(inputs, out_dir, args.out_format, args.suffix, args.compare)

    device = pick_device(args.device)
    if args.amp and device.type != "cuda":
        print("note: --amp only applies on CUDA; running in float32", file=sys.stderr)
    model, ckpt = load_model(args.ckpt, map_location="cpu")
    model.to(device).eval()
    text_dim = int(model.model_args["text_dim"])
    if model.model_args.get("text_cond") == "none":
        print(f"note: {args.ckpt} is a plain Restormer (no text conditioning); the instruction is ignored")
        text = torch.zeros(1, text_dim)
    else:
        text = load_instruction(args, ckpt, text_dim)
    budget = int(args.max_memory * 2**30) if args.max_memory else None

    ok, failed = 0, 0
    out_dir.mkdir(parents=True, exist_ok=True)
    bar = tqdm(plan.items(), desc="images", unit="img", disable=args.no_progress)
    for src, dst in bar:
        try:
            photo = load_photo(src)
            result, used = restore(model, photo.rgb, text, device, args.tile, args.tile_overlap, args.amp,
                                   budget, progress=not args.no_progress)
            save_photo(dst, result, photo.alpha, photo.bit_depth, photo.grayscale)
            if args.compare:
                save_compare(dst.with_name(f"{src.stem}{args.suffix}_compare.png"), photo.rgb, result)
            h, w = result.shape[:2]
            how = f"{used}px tiles" if used else "whole"
            tqdm.write(f"{src} -> {dst} ({w}x{h}, {how})")
            ok += 1
        except UserError as e:
            tqdm.write(f"error: {e}", file=sys.stderr)
            failed += 1
        except Exception as e:  # one bad image must not stop the batch: report it in one line
            if _is_oom(e):
                reason = "out of memory; pass a smaller --tile (e.g. 256) or leave --tile out to choose it"
            else:
                reason = f"{type(e).__name__}: " + (str(e).strip().splitlines() or [""])[0][:200]
            tqdm.write(f"error: {src}: {reason}", file=sys.stderr)
            failed += 1
    bar.close()
    failed += len(inputs) - len(plan)  # skipped because of a name clash
    print(f"summary: {ok} succeeded, {failed} failed; results in {out_dir}")
    return 0 if failed == 0 else 1


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    retain_freed_memory()  # no page faults on big CPU tensors (utils/allocator.py)
    try:
        return run(args)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
