"""Release folders from the command line.

    python -m utils.release export --ckpt ckpt/demo/last.pt --results output/demo/results.json --out release/demo
    python -m utils.release export --ckpt ckpt/demo/last.pt --out release/demo_bf16 --dtype bf16
    python -m utils.release export --ckpt ckpt/demo/last.pt --out release/demo_onnx --onnx
    python -m utils.release verify release/demo

onnxruntime's CPU latency beside torch's: ``python bench.py --ckpt release/demo --onnx --impl auto --no_train``.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Sequence

from utils.cli import ArgumentParser, cli_main
from utils.release.export import export_release
from utils.release.folder import DTYPES, read_release


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog="python -m utils.release", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    e = sub.add_parser("export", help="write the release folder of a last.pt")
    e.add_argument("--ckpt", required=True, help="the checkpoint train.py wrote (ckpt/<name>/last.pt)")
    e.add_argument("--out", required=True, help="the release folder to write (e.g. release/<name>)")
    e.add_argument("--results", default=None,
                   help="test.py's results.json of this checkpoint, for the model card's table (another "
                        "checkpoint's is refused)")
    e.add_argument("--dtype", choices=tuple(DTYPES), default="fp32",
                   help="how the network's weights are stored: fp32 (identical outputs), bf16 or fp16 (half the size)")
    e.add_argument("--onnx", action="store_true",
                   help="also write model.onnx (dynamic height and width, the instruction embedding as an input)")
    e.add_argument("--text_ckpt", default=None, help="the instruction encoder folder, where the checkpoint's own "
                                                     "record does not find it")
    e.add_argument("--overwrite", action="store_true", help="replace an existing --out folder")
    v = sub.add_parser("verify", help="check a release folder (every file, its SHA-256, the tensors)")
    v.add_argument("folder")
    return p


def release_main(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "export":
        config = export_release(args.ckpt, args.out, args.results, args.dtype, args.overwrite, args.text_ckpt,
                                args.onnx)
        files = sorted(p for p in Path(args.out).rglob("*") if p.is_file())
        size = sum(p.stat().st_size for p in files) / 2**20
        print(f"wrote {args.out}: {len(files)} files, {size:.1f} MiB; weights {config['dtype']}, "
              f"sha256 {config['weights_sha256'][:12]}")
        return 0
    ckpt = read_release(args.folder)
    print(f"{args.folder}: every file matches SHA256SUMS; {len(ckpt['model'])} tensors fit the network; "
          f"tasks {', '.join(ckpt['options']['de_type'])}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return cli_main(release_main, argv)


if __name__ == "__main__":
    sys.exit(main())
