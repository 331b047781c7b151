"""A web page for restoring photos with TextPromptIR (arXiv 2312.06162): drop images, say what is
wrong, compare before and after, download the full-size results.

    python app.py --ckpt ckpt/demo/last.pt            # then open http://127.0.0.1:7860
    python app.py --port 8080 --max_pixels 100000000 --tile 512

The page runs the engine demo.py runs (utils/runtime/engine.py; the request handler is
utils/runtime/page.py), loaded once at start-up. It listens on 127.0.0.1 only, sends nothing off the
machine (no analytics, no fonts or scripts from elsewhere) and keeps uploads and results in a
temporary folder of its own, removed when it stops. Requests are queued and run one at a time.

Ctrl-C or SIGTERM while serving cancels the request in progress at its network's next stage, waits
for it to end, closes the server, removes the temporary folder and exits 0; during start-up they
remove the folder and exit 130 (SIGINT) or 143 (SIGTERM).
"""
import argparse
import logging
import os
import shutil
import signal
import sys
import tempfile
import time
import types
from pathlib import Path
from typing import Any, Sequence

from options import SHARE_WARNING, app_parser, check_restore_options
from utils.cli import cli_main
from utils.data.image_io import PHOTO_EXTENSIONS
from utils.errors import UserError
from utils.progress import write
from utils.runtime.allocator import retain_freed_memory
from utils.runtime.compile import CACHE_ENV
from utils.runtime.engine import load_restorer
from utils.runtime.page import AUTO, INSTRUCTION_LABEL, TASK_LABEL, PageRestorer, Reply

# What each example asks, one per task of the demo set; a denoise example gets its noise here
EXAMPLE_ASKS = {"derain": "it was pouring, remove the rain", "dehaze": "clear the haze, it looks washed out",
                "denoise": "my phone made this night shot grainy, remove the noise"}
EXAMPLE_NOISE_SIGMA = 25
# Gradio's own reporting and update checks, and Hugging Face's, all off: the page calls no one
OFFLINE_ENV = {"GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_OFFLINE": "1"}
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
STOP_POLL_S = 0.2  # how often the main thread looks whether the server still runs
STOP_WAIT_S = 60  # the longest a stop waits for the request in progress to end (it is cancelled first)


def example_rows(folder: Path, out: Path) -> list[list[Any]]:
    """One example per task of the demo set under ``folder`` ([files, instruction, task] rows),
    copied into ``out`` (the app's temporary folder; a clean denoise image gets its noise there)."""
    import numpy as np

    from utils.data.degradations import add_gaussian_noise
    from utils.data.image_io import read_image, write_image

    picks = {"derain": sorted((folder / "derain").glob("*/input/*")),
             "dehaze": sorted((folder / "dehaze" / "input").glob("*")),
             "denoise": sorted((folder / "denoise").glob("*/*"))}
    rows = []
    out.mkdir(parents=True, exist_ok=True)
    for task, files in picks.items():
        files = [f for f in files if f.suffix.lower() in PHOTO_EXTENSIONS]
        if not files:
            continue
        src = files[0]
        dst = out / f"{task}_{src.name}"
        if task == "denoise":
            noisy = add_gaussian_noise(read_image(src), EXAMPLE_NOISE_SIGMA, np.random.default_rng(0))
            write_image(dst.with_suffix(".png"), noisy)
            dst = dst.with_suffix(".png")
        else:
            shutil.copyfile(src, dst)
        rows.append([[str(dst)], EXAMPLE_ASKS[task], AUTO])
    return rows


def build_page(handler: PageRestorer, ckpt: str, examples: list[list[Any]], examples_note: str) -> Any:
    """The Gradio page: upload, instruction and task menu, before/after, downloads, report."""
    import gradio as gr

    def restore(files: list[str] | None, instruction: str, task: str):
        print(f"request: {len(files or [])} file(s), task {task}", flush=True)
        reply: Reply = handler(files, instruction, task)
        pairs = [(r.before, r.after) for r in reply.results]
        paths = [str(r.path) for r in reply.results]
        gallery = [(r.after, r.name) for r in reply.results]
        # a request without results hides the last one's (Gradio keeps a component's value on None)
        return (gr.update(value=pairs[0] if pairs else None, visible=bool(pairs)),
                gr.update(value=gallery, visible=len(pairs) > 1), gr.update(value=paths or None, visible=bool(paths)),
                gr.update(value="\n".join(reply.errors), visible=bool(reply.errors)), "\n".join(reply.report), pairs)

    def pick(pairs: list, evt: gr.SelectData):
        return pairs[evt.index] if pairs and evt.index is not None and evt.index < len(pairs) else None

    with gr.Blocks(title="TextPromptIR", analytics_enabled=False, delete_cache=(600, 3600)) as page:
        gr.Markdown("## TextPromptIR: restore a photo by saying what is wrong\n"
                    f"Checkpoint `{ckpt}` on {handler.restorer.device}. Drop one or several photos "
                    f"({', '.join(PHOTO_EXTENSIONS)}), describe the problem in your own words or pick a task, "
                    "then Restore. Results keep each photo's size, format, bit depth and transparency.")
        pairs = gr.State([])
        with gr.Row():
            with gr.Column():
                files = gr.File(label="Photos", file_count="multiple", file_types=list(PHOTO_EXTENSIONS),
                                type="filepath", elem_id="uploads")
                instruction = gr.Textbox(label=INSTRUCTION_LABEL, lines=2, max_length=500, elem_id="instruction",
                                         placeholder='e.g. "it was pouring, remove the rain"')
                task = gr.Dropdown(choices=handler.task_choices, value=AUTO, elem_id="task",
                                   label=f"{TASK_LABEL} ({AUTO}: understood from the instruction)")
                run = gr.Button("Restore", variant="primary", elem_id="restore")
            with gr.Column():
                slider = gr.ImageSlider(label="Before / after (drag the handle)", type="numpy", format="png",
                                        interactive=False, elem_id="before_after")
                gallery = gr.Gallery(label="All results (click one to compare)", visible=False, columns=4,
                                     height=160, elem_id="gallery", format="png")
                downloads = gr.File(label="Full-size results", file_count="multiple", interactive=False,
                                    visible=False, elem_id="downloads")
                errors = gr.Textbox(label="Problems", visible=False, interactive=False, elem_id="errors")
                report = gr.Textbox(label="What was understood", interactive=False, lines=4, elem_id="report")
        if examples:
            gr.Examples(examples, inputs=[files, instruction, task], label="Examples from the demo set "
                        "(click one, then Restore)", cache_examples=False, elem_id="examples")
        else:
            gr.Markdown(examples_note)
        run.click(restore, [files, instruction, task], [slider, gallery, downloads, errors, report, pairs],
                  concurrency_limit=1, concurrency_id="device")  # one request on the device at a time
        gallery.select(pick, [pairs], [slider])
    page.queue(default_concurrency_limit=1, max_size=32)
    return page


def one_line(error: BaseException) -> str:
    """An exception as one line: its type and its message's lines joined, cut to 300 characters."""
    return f"{type(error).__name__}: " + "; ".join(line.strip() for line in str(error).splitlines()
                                                   if line.strip())[:300]


class OneLineErrors(logging.Filter):
    """A log record's exception as one line after its message, instead of its traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None:
            record.msg, record.args = f"{record.getMessage().strip()}: {one_line(record.exc_info[1])}", ()
            record.exc_info, record.exc_text = None, None
        return True


def log_refusals_in_one_line() -> None:
    """One line in the server log for each API call Gradio refuses (a file path that was not
    uploaded, a task not on the menu, a malformed payload, an unknown endpoint), where Gradio prints
    a whole traceback. The page's handler turns every problem of its own into a message, so what
    reaches Gradio's queue is a refused call. (Gradio's queue calls ``traceback.print_exc`` itself:
    its module's ``traceback`` is replaced; tests/test_app.py checks it still works.)"""
    import gradio.queueing

    def print_refusal() -> None:
        write(f"refused a call: {one_line(sys.exc_info()[1])}", error=True)

    gradio.queueing.traceback = types.SimpleNamespace(print_exc=print_refusal)
    logging.getLogger("uvicorn.error").addFilter(OneLineErrors())


class StopRequest(KeyboardInterrupt):
    """SIGINT (Ctrl-C) or SIGTERM (a service manager's stop), raised in the main thread."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _raise_stop(signum: int, _frame: Any) -> None:
    raise StopRequest(signum)


def _already_stopping(signum: int, _frame: Any) -> None:
    write(f"{signal.Signals(signum).name}: already stopping", error=True)


class RequestStillRunning(Exception):
    """A request outlived the stop's wait: the process ends with os._exit (after the clean-up)."""


def serve_until_stopped(page: Any, handler: PageRestorer) -> None:
    """Serve until SIGINT or SIGTERM; then cancel the request in progress at its network's next
    stage, wait for it to end (``STOP_WAIT_S`` at most) and close the server. A request still
    running after that ends the process at once (a normal exit would abort under the running thread)."""
    try:
        while page.is_running:
            time.sleep(STOP_POLL_S)
    except StopRequest as e:
        write(f"stopping ({e}): cancelling the request in progress, if any", error=True)
    for signum in STOP_SIGNALS:  # a second Ctrl-C must not cut the clean-up short
        signal.signal(signum, _already_stopping)
    if not handler.stop(STOP_WAIT_S):
        write(f"the request in progress did not end within {STOP_WAIT_S} s: stopping without it", error=True)
        raise RequestStillRunning
    page.close(verbose=False)


def app_main(argv: Sequence[str] | None) -> int:
    args = app_parser().parse_args(argv)
    check_restore_options(args)
    retain_freed_memory()  # no page faults on big CPU tensors (utils/runtime/allocator.py)
    if args.share:
        write(SHARE_WARNING, error=True)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        write(f"warning: --host {args.host}: the page is open to every machine that can reach this one", error=True)
    for signum in STOP_SIGNALS:  # from here on, a stop removes the temporary folder first
        signal.signal(signum, _raise_stop)
    root = None
    try:
        root = Path(tempfile.mkdtemp(prefix="textpromptir-app-"))  # uploads, results, examples: all go here
        page, handler = start_page(args, root)
        serve_until_stopped(page, handler)
        return 0
    except StopRequest as e:  # during start-up
        write(f"stopped ({e}) during start-up", error=True)
        return 128 + e.signum
    except RequestStillRunning:  # a normal exit would abort under the running thread
        shutil.rmtree(root, ignore_errors=True)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    finally:
        for signum in STOP_SIGNALS:  # a second Ctrl-C must not cut the removal short
            signal.signal(signum, _already_stopping)
        if root is not None:
            shutil.rmtree(root, ignore_errors=True)


def start_page(args: argparse.Namespace, root: Path) -> tuple[Any, PageRestorer]:
    """Load the checkpoint, build the page and serve it from ``root`` (the app's temporary folder)."""
    os.environ.update(OFFLINE_ENV, GRADIO_TEMP_DIR=str(root / "gradio"))
    if not args.compile:  # the folder torch makes for its compiler when imported goes here too, not in /tmp
        os.environ.setdefault(CACHE_ENV, str(root / "torch"))
    try:
        import gradio  # noqa: F401  (after the environment above: Gradio reads it when imported)
    except ImportError:
        raise UserError("the page needs Gradio: run `make install` (or pip install -r requirements.txt)") from None
    restorer = load_restorer(args)  # a bad --ckpt stops here, in one line
    handler = PageRestorer(restorer, root / "results", args.max_pixels)
    folder = Path(args.examples)
    rows = example_rows(folder, root / "examples") if folder.is_dir() else []
    note = (f"No examples: the demo set is not in `{folder}`. `make demo` builds it (or "
            "`python -m utils.data.demo_data --out data/demo`); restart the page afterwards.")
    if not rows:
        write(f"note: {note}", error=True)
    page = build_page(handler, args.ckpt, rows, note)
    try:
        _, local_url, share_url = page.launch(
            server_name=args.host, server_port=args.port, share=args.share, inbrowser=False, quiet=True,
            prevent_thread_lock=True, max_file_size=f"{args.max_upload_mb}mb", footer_links=[], run_history=False,
            ssr_mode=False, pwa=False, mcp_server=False, enable_monitoring=False, show_error=False, strict_cors=True)
    except OSError as e:  # e.g. the port is taken
        raise UserError(f"cannot serve on {args.host}:{args.port} ({e}); pass another --port") from None
    except StopRequest:
        page.close(verbose=False)
        raise
    log_refusals_in_one_line()
    print(f"serving {local_url}" + (f" and {share_url}" if share_url else "") + " (Ctrl-C stops it)", flush=True)
    return page, handler


def main(argv: Sequence[str] | None = None) -> int:
    return cli_main(app_main, argv)


if __name__ == "__main__":
    sys.exit(main())
