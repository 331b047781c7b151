"""Start app.py, restore the first example in headless Chromium and save a screenshot of the page.

    python scripts/app_screenshot.py --ckpt ckpt/demo/last.pt --out docs/app.png

Drives the system's Chromium (Debian's ``chromium`` package) through Playwright's Python package;
tests/test_app.py uses the same helpers to test the page in a real browser.
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Sequence

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def chromium_path() -> str | None:
    """The system's Chromium (never a browser that Playwright downloads)."""
    return next((p for p in map(shutil.which, CHROMIUM_NAMES) if p), None)


def start_app(args: Sequence[str], port: int, cwd: Path, env: dict[str, str] | None = None,
              timeout_s: float = 300) -> tuple[subprocess.Popen, str]:
    """Run ``app.py ARGS --port PORT`` from ``cwd`` until it serves; returns it and its URL."""
    env = dict(os.environ if env is None else env, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, str(ROOT / "app.py"), *args, "--port", str(port)], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + timeout_s
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if line.startswith("serving http://"):
            return proc, line.split()[1]
        if time.monotonic() > deadline:
            break
    proc.kill()
    raise RuntimeError("app.py did not start:\n" + "".join(lines))


def stop_app(proc: subprocess.Popen) -> str:
    """SIGTERM (as a service manager stops it), then the rest of its output."""
    proc.send_signal(signal.SIGTERM)
    try:
        out, _ = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    return out or ""


def open_browser() -> tuple[Any, Any]:
    """(playwright, browser): headless system Chromium; RuntimeError where none can start."""
    from playwright.sync_api import sync_playwright

    path = chromium_path()
    if path is None:
        raise RuntimeError(f"no Chromium on PATH ({', '.join(CHROMIUM_NAMES)}); `apt-get install chromium`")
    pw = sync_playwright().start()
    try:
        browser = pw.chromium.launch(executable_path=path, headless=True,
                                     args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
    except Exception as e:
        pw.stop()
        raise RuntimeError(f"{path} does not start: {str(e).splitlines()[0]}") from None
    return pw, browser


# Set window.__busy once any output's status tracker shows (loses "hide"): the request has begun
WATCH_BUSY = """() => { window.__busy = false;
  const obs = new MutationObserver(() => { if (document.querySelector('[data-testid=status-tracker]:not(.hide)'))
    { window.__busy = true; } });
  obs.observe(document.body, {attributes: true, subtree: true, attributeFilter: ['class']}); }"""
LINKS = "#downloads a[data-testid=download-link]"
NO_LINKS = f"() => ![...document.querySelectorAll('{LINKS}')].some(a => a.offsetParent)"
IDLE = "() => window.__busy && !document.querySelector('[data-testid=status-tracker]:not(.hide)')"


def drop_files(page: Any, files: Sequence[Path]) -> None:
    """Drag and drop ``files`` onto the empty upload box, as a user drops them from a file manager."""
    import base64
    import mimetypes

    items = [[f.name, base64.b64encode(f.read_bytes()).decode(), mimetypes.guess_type(f.name)[0] or ""]
             for f in files]
    transfer = page.evaluate_handle("""items => { const dt = new DataTransfer();
        for (const [name, b64, type] of items) {
          dt.items.add(new File([Uint8Array.from(atob(b64), c => c.charCodeAt(0))], name, {type})); }
        return dt; }""", items)
    page.dispatch_event("#uploads [aria-label='Click to upload or drop files']", "drop", {"dataTransfer": transfer})


def restore_in_page(page: Any, files: Sequence[Path] | None, instruction: str | None, drop: bool = False,
                    timeout_ms: int = 240_000) -> None:
    """Put ``files`` in the upload box in place of what it held (dropped, or chosen in the file
    dialog), or keep its files; type ``instruction`` (or keep it); press Restore and wait until the
    request is done: its results or its problem are on the page."""
    if files:
        clear = page.locator("#uploads button[aria-label='Clear']")
        if clear.count():
            clear.first.click()
            page.wait_for_function("() => !document.querySelector('#uploads td.filename')", timeout=30_000)
        if drop:
            drop_files(page, files)
        else:
            page.set_input_files("#uploads input[type=file]", [str(f) for f in files])
        page.wait_for_function("n => document.querySelectorAll('#uploads td.filename').length == n",
                               arg=len(files), timeout=60_000)
    if instruction is not None:
        page.fill("#instruction textarea", instruction)
    page.evaluate(WATCH_BUSY)
    page.click("#restore")
    page.wait_for_function(IDLE, timeout=timeout_ms, polling=100)


def download_links(page: Any) -> list[str]:
    """The page's links to the full-size results (those shown)."""
    return [a.get_attribute("href") for a in page.locator(LINKS).all() if a.is_visible()]


def problems(page: Any) -> str:
    """The page's "Problems" box ('' while hidden)."""
    box = page.locator("#errors textarea")
    return box.input_value() if box.count() and box.is_visible() else ""


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ckpt", default="ckpt/demo/last.pt")
    p.add_argument("--examples", default="data/demo/test")
    p.add_argument("--out", default="docs/app.png")
    args = p.parse_args(argv)
    proc, url = start_app(["--ckpt", args.ckpt, "--examples", str(Path(args.examples).resolve()), "--device", "cpu"],
                          free_port(), ROOT)
    try:
        pw, browser = open_browser()
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(url)
            page.wait_for_selector("#restore")
            page.locator("#examples tbody tr").first.click()  # the first example fills the inputs
            page.wait_for_function("() => document.querySelectorAll('#uploads td.filename').length == 1")
            restore_in_page(page, None, None)
            if not download_links(page):
                raise RuntimeError(f"the example was not restored: {problems(page)}")
            page.screenshot(path=args.out, full_page=True)
        finally:
            browser.close()
            pw.stop()
    finally:
        stop_app(proc)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
