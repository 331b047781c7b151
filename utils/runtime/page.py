"""What app.py's web page does with one request, without Gradio: uploaded files decoded by the
project's own reader (grey, RGBA, 16-bit, EXIF orientation), planned and restored by the same
``Restorer`` as demo.py, each result written full-size in its input's format into a folder of the
app's own, plus 8-bit previews for the before/after view and a report of what was understood.

Nothing a user sends can stop the page: every problem becomes a message, and the next request runs.
"""
from __future__ import annotations

import re
import shutil
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from utils.data.image_io import PHOTO_EXTENSIONS, Photo, load_photo, save_photo
from utils.errors import UserError
from utils.runtime.engine import AUTO, RestorePlan, Restorer, failure_reason
from utils.tasks import TASKS

PREVIEW_SIDE = 1600  # longest side of the before/after previews sent to the browser, in pixels
KEEP_RESULTS_S = 3600  # a request's results are removed this long after it (the page's download links)
MAX_IMAGES = 16  # images restored by one request
INSTRUCTION_LABEL = "What is wrong?"  # the page's instruction box and task menu (app.py builds them)
TASK_LABEL = "Task"
# The command-line options the engine's messages name, and the page's controls that do their work
PAGE_CONTROLS = ((re.compile(rf"--task {AUTO} follows the image"),  # the page's auto follows the text first
                  f'an empty "{INSTRUCTION_LABEL}" box follows the image'),
                 (re.compile(r"--task or --instruction"), f'the "{INSTRUCTION_LABEL}" box or the {TASK_LABEL} menu'),
                 (re.compile(rf"--task ({'|'.join((AUTO, *TASKS))})\b"), rf"the {TASK_LABEL} menu set to \1"),
                 (re.compile(r"--task\b"), f"the {TASK_LABEL} menu"),
                 (re.compile(r"--instruction\b"), f'the "{INSTRUCTION_LABEL}" box'))


class Stopped(Exception):
    """The page is stopping: the request in progress ends at its network's next stage."""


@dataclass
class Result:
    """One restored upload: its name, the full-size file, 8-bit previews (HxWx3 uint8) and its line."""

    name: str
    path: Path
    before: np.ndarray
    after: np.ndarray
    line: str


@dataclass
class Reply:
    """All a request gives back: results, errors (one line each, for the page) and the report."""

    results: list[Result] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    report: list[str] = field(default_factory=list)


def preview(rgb: np.ndarray, side: int = PREVIEW_SIDE) -> np.ndarray:
    """An 8-bit HxWx3 copy of a float image in [0, 1], its longest side at most ``side`` pixels."""
    h, w = rgb.shape[:2]
    scale = side / max(h, w)
    if scale < 1:
        rgb = cv2.resize(rgb, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    return np.rint(np.clip(rgb, 0.0, 1.0) * 255.0).astype(np.uint8)


def page_words(line: str) -> str:
    """A message of the engine as the page says it: its ``--task`` and ``--instruction`` become
    the page's task menu and instruction box."""
    for option, control in PAGE_CONTROLS:
        line = option.sub(control, line)
    return line


def upload_name(upload: Path) -> str:
    """The name the user's file had: browsers send a ``"`` in a file name as ``%22`` in the upload
    form (the HTML standard's multipart/form-data encoding), and Gradio keeps the upload under that name."""
    return upload.name.replace("%22", '"')


def result_name(name: str) -> str:
    """The download's file name: the upload's stem, ``_restored``, the upload's own extension."""
    path = Path(name)
    return f"{path.stem}_restored{path.suffix.lower()}"


class PageRestorer:
    """A loaded ``Restorer`` serving the page's requests; results go to ``work_dir`` (the app's own
    temporary folder), one sub-folder per request, removed ``keep_s`` seconds later."""

    def __init__(self, restorer: Restorer, work_dir: Path, max_pixels: int, max_images: int = MAX_IMAGES,
                 keep_s: float = KEEP_RESULTS_S) -> None:
        self.restorer = restorer
        self.work_dir = Path(work_dir)
        self.max_pixels = max_pixels
        self.max_images = max_images
        self.keep_s = keep_s
        self._stopping = threading.Event()
        self._busy = threading.Lock()  # held while a request runs
        for stage in restorer.model.children():  # each stage of the network first checks for a stop
            stage.register_forward_pre_hook(self._check_stop)

    def _check_stop(self, *_: object) -> None:
        if self._stopping.is_set():
            raise Stopped("the page is stopping; not restored")

    def stop(self, timeout_s: float) -> bool:
        """Refuse new requests, cancel the one in progress at its network's next stage, and wait up
        to ``timeout_s`` seconds for it to end; True when none runs any more."""
        self._stopping.set()
        if not self._busy.acquire(timeout=timeout_s):
            return False
        self._busy.release()
        return True

    @property
    def task_choices(self) -> list[str]:
        """The task menu: ``auto`` (read the instruction) and every task the checkpoint knows."""
        return [AUTO, *self.restorer.tasks]

    def _drop_old_results(self) -> None:
        if not self.work_dir.is_dir():
            return
        now = time.time()
        for folder in self.work_dir.iterdir():
            if folder.is_dir() and now - folder.stat().st_mtime > self.keep_s:
                shutil.rmtree(folder, ignore_errors=True)

    def __call__(self, uploads: Sequence[str | Path] | None, instruction: str | None, task: str | None) -> Reply:
        """Restore every upload (paths in Gradio's upload cache) with the instruction or task."""
        with self._busy:
            if self._stopping.is_set():
                return Reply(errors=["the page is stopping: nothing was restored"])
            return self._request(uploads, instruction, task)

    def _request(self, uploads: Sequence[str | Path] | None, instruction: str | None, task: str | None) -> Reply:
        start = time.perf_counter()
        reply = Reply()
        uploads = [Path(p) for p in (uploads or [])]
        if not uploads:
            reply.errors.append("upload an image first (drag it onto the upload box, or click it to choose files)")
            return reply
        if len(uploads) > self.max_images:
            reply.errors.append(f"{len(uploads)} images at once: the page restores at most {self.max_images} "
                                "per request; upload fewer")
            return reply
        instruction = " ".join((instruction or "").split()) or None
        task = None if task in (None, "", AUTO) else task  # auto: the instruction decides, else the image
        self._drop_old_results()
        out_dir = self.work_dir / uuid.uuid4().hex
        understood: list[str] = []
        for upload in uploads:
            name = upload_name(upload)
            if self._stopping.is_set():
                reply.errors.append(f"{name}: the page is stopping; not restored")
                continue
            try:
                if upload.suffix.lower() not in PHOTO_EXTENSIONS:
                    raise UserError(f"{name}: not an image type the page reads; upload "
                                    f"{', '.join(PHOTO_EXTENSIONS)}")
                photo = load_photo(upload, self.max_pixels)
            except Exception as e:  # one bad upload must not stop the others, nor the page
                reply.errors.append(failure_reason(name, e).replace(str(upload), name))  # no cache path shown
                continue
            try:
                plan = self.restorer.plan(instruction, task, photo.rgb, what=name)
            except UserError as e:  # the request itself (an empty or off-topic instruction): said once
                if str(e) not in reply.errors:
                    reply.errors.append(str(e))
                continue
            understood += [line for line in plan.lines + [f"warning: {w}" for w in plan.warnings]
                           if line not in understood]
            try:
                reply.results.append(self._restore_one(photo, plan, name, out_dir, reply.report))
                reply.report.append(reply.results[-1].line)
            except Stopped as e:
                reply.errors.append(f"{name}: {e}")
            except Exception as e:  # a broken checkpoint's NaN, out of memory: the page stays up
                reply.errors.append(failure_reason(name, e))
        reply.report[:0] = understood
        if reply.results:
            reply.report.append(f"time taken: {time.perf_counter() - start:.1f} s for {len(reply.results)} "
                                f"image{'s' if len(reply.results) > 1 else ''} on {self.restorer.device}")
        reply.errors, reply.report = list(map(page_words, reply.errors)), list(map(page_words, reply.report))
        return reply

    def _restore_one(self, photo: Photo, plan: RestorePlan, name: str, out_dir: Path, notes: list[str]) -> Result:
        """Restore one decoded upload through ``plan`` and write it full-size into ``out_dir``."""
        t0 = time.perf_counter()
        done = self.restorer.restore(photo.rgb, plan, note=notes.append)
        seconds = time.perf_counter() - t0
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / result_name(name)
        for n in range(2, self.max_images + 2):  # two uploads of one name keep both results
            if not path.exists():
                break
            path = out_dir / result_name(f"{Path(name).stem}_{n}{Path(name).suffix}")
        save_photo(path, done.rgb, photo.alpha, photo.bit_depth, photo.grayscale)
        h, w = done.rgb.shape[:2]
        kind = f"{photo.bit_depth}-bit {'grey' if photo.grayscale else 'colour'}" + (
            " with transparency" if photo.alpha is not None else "")
        steps = "; ".join(done.lines)
        line = (f"{name}: {w}x{h} {kind}, {f'{done.tile}px tiles' if done.tile else 'whole'}, {seconds:.1f} s"
                + (f" ({steps})" if steps else ""))
        return Result(name, path, preview(photo.rgb), preview(done.rgb), line)
