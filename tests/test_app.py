"""app.py's page in a real browser (the system's Chromium driven by Playwright): a photo is uploaded,
restored and downloaded full-size; a text file named .png gets its message and the next photo still
works; the page asks nothing of any host but this machine; API calls it refuses are one line each in
its log; a stop during start-up or mid-request is clean and leaves nothing behind. The request
handler itself is tested without a browser in tests/test_page.py."""
from __future__ import annotations

import io
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

from app_screenshot import (  # noqa: E402
    LINKS,
    NO_LINKS,
    download_links,
    free_port,
    open_browser,
    problems,
    restore_in_page,
    start_app,
)


def skip_or_fail(reason: str) -> None:
    """Skip where the page's tools are missing, but never in CI (``make test`` installs them)."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI must run the browser tests)")
    pytest.skip(reason, allow_module_level=True)


try:
    import gradio  # noqa: F401
    import httpx
    import playwright  # noqa: F401
except ImportError as e:
    skip_or_fail(f"the page's tests need {e.name}: `make install` adds it")
from utils.runtime.engine import AUTO  # noqa: E402

LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}


@pytest.fixture(scope="module")
def browser():
    try:
        pw, chromium = open_browser()
    except RuntimeError as e:
        skip_or_fail(f"no browser can start here: {e}")
    yield chromium
    chromium.close()
    pw.stop()


@pytest.fixture(scope="module")
def served(tiny_ckpt, tmp_path_factory):
    """app.py on a free loopback port, run from an empty folder with its own TMPDIR and HOME,
    with a demo-set layout of one image per task for the examples."""
    base = tmp_path_factory.mktemp("app")
    cwd, tmp, home, demo = base / "cwd", base / "tmp", base / "home", base / "demo"
    for d in (cwd, tmp, home):
        d.mkdir()
    rng = np.random.default_rng(0)
    for rel in ("derain/demo/input/a.png", "dehaze/input/0001_0.8_0.2.jpg", "denoise/demo/b.png"):
        (demo / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (32, 48, 3), dtype=np.uint8)).save(demo / rel)
    env = dict(os.environ, TMPDIR=str(tmp), HOME=str(home))
    # small tiles: a 1200x1200 upload takes seconds (the test images are smaller than a tile)
    proc, url = start_app(["--ckpt", str(tiny_ckpt), "--device", "cpu", "--examples", str(demo), "--tile", "64",
                           "--tile_overlap", "8"], free_port(), cwd, env)
    log: list[str] = []  # the server's output from here on, as it comes
    reader = threading.Thread(target=lambda: log.extend(proc.stdout), daemon=True)
    reader.start()
    state = {"proc": proc, "url": url, "cwd": cwd, "tmp": tmp, "home": home, "log": log, "reader": reader}
    yield state
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def wait_for_log(served, predicate, timeout_s: float = 60) -> str:
    """The server's output once ``predicate(output)`` holds (a failed assertion after ``timeout_s``)."""
    deadline = time.monotonic() + timeout_s
    while not predicate("".join(served["log"])):
        assert time.monotonic() < deadline and served["proc"].poll() is None, "".join(served["log"])
        time.sleep(0.05)
    return "".join(served["log"])


def api_call(url: str, data: list, api: str = "restore") -> httpx.Response:
    """A call to the page's API, as a script would make it (no browser)."""
    return httpx.post(f"{url}gradio_api/call/{api}", json={"data": data}, timeout=60)


def file_data(path: str) -> dict:
    return {"path": path, "meta": {"_type": "gradio.FileData"}}


def photo(path: Path, h: int, w: int, seed: int = 0) -> Path:
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)
    return path


def test_restore_in_a_real_browser(served, browser, tmp_path):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    requests: list[str] = []
    context.on("request", lambda r: requests.append(r.url))
    page = context.new_page()
    page.goto(served["url"])
    page.wait_for_selector("#restore")
    options = page.locator("#examples tbody tr")
    assert options.count() == 3  # one example per task of the demo set

    # a photo and an instruction: the result is the input's size, and not the input
    src = photo(tmp_path / "street.png", 40, 56)
    restore_in_page(page, [src], "it was pouring, remove the rain", drop=True)
    assert problems(page) == ""
    [link] = download_links(page)
    result = page.request.get(link)
    assert result.ok
    out = np.asarray(Image.open(io.BytesIO(result.body())))
    assert out.shape == (40, 56, 3)
    assert np.abs(out.astype(int) - np.asarray(Image.open(src)).astype(int)).mean() > 1
    report = page.locator("#report textarea").input_value()
    assert "instruction: \"it was pouring, remove the rain\" -> " in report and "time taken" in report
    page.screenshot(path=str(tmp_path / "page.png"), full_page=True)
    assert (tmp_path / "page.png").stat().st_size > 10_000

    # a text file named .png: its message on the page, then a good photo works again
    fake = tmp_path / "holiday.png"
    fake.write_text("this is not a picture\n")
    restore_in_page(page, [fake], None)
    assert "holiday.png: cannot read this image" in problems(page)
    page.wait_for_function(NO_LINKS, timeout=20_000)  # the last request's result is not offered as this one's
    assert not page.locator("#before_after").is_visible()
    restore_in_page(page, [photo(tmp_path / "good.png", 24, 32, seed=1)], "remove the noise")
    assert problems(page) == ""
    assert len(download_links(page)) == 1

    # every request the page made went to this machine
    hosts = {urlparse(u).hostname for u in requests if urlparse(u).scheme in ("http", "https", "ws", "wss")}
    assert hosts and hosts <= LOOPBACK, hosts
    context.close()


def test_a_quote_in_a_file_name_comes_back_as_a_quote(served, browser, tmp_path):
    page = browser.new_page()
    page.goto(served["url"])
    page.wait_for_selector("#restore")
    restore_in_page(page, [photo(tmp_path / 'my "best" shot.png', 24, 32)], "remove the noise")
    assert problems(page) == ""
    assert len(download_links(page)) == 1
    assert page.locator(LINKS).first.get_attribute("download") == 'my "best" shot_restored.png'
    assert 'my "best" shot.png: 32x24' in page.locator("#report textarea").input_value()
    page.close()


def test_refused_api_calls_are_one_line_each_in_the_server_log(served, tmp_path):
    url = served["url"]
    refused = [api_call(url, [[file_data(str(tmp_path / "never_uploaded.png"))], "remove the rain", AUTO]),
               api_call(url, [None, "remove the rain", "bogus"]),  # a task not on the menu
               api_call(url, ["not a list of files", "remove the rain", AUTO]),
               api_call(url, [None, "remove the rain"])]  # an input missing
    assert all(r.status_code == 200 for r in refused)
    for r in refused:  # each call's outcome: an error event
        assert "event: error" in httpx.get(f"{url}gradio_api/call/restore/{r.json()['event_id']}", timeout=60).text
    assert api_call(url, [], api="no_such_endpoint").status_code >= 400
    log = wait_for_log(served, lambda out: out.count("refused a call: ") == 4 and "no_such_endpoint" in out)
    assert "Traceback" not in log and 'File "' not in log, log
    lines = log.splitlines()
    assert [line for line in lines if "never_uploaded.png" in line] == [
        f"refused a call: InvalidPathError: Cannot move {tmp_path / 'never_uploaded.png'} to the gradio cache dir "
        "because it was not uploaded by a user."]
    assert len([line for line in lines if "bogus" in line]) == 1
    assert len([line for line in lines if "no_such_endpoint" in line]) == 1


def test_a_stop_mid_request_is_clean_and_leaves_nothing_behind(served, tmp_path):
    proc, url = served["proc"], served["url"]
    assert proc.poll() is None
    big = photo(tmp_path / "big.png", 1200, 1200)
    with big.open("rb") as f:
        [path] = httpx.post(f"{url}gradio_api/upload", files={"files": ("big.png", f, "image/png")}, timeout=60).json()
    started = len(re.findall(r"^request: ", "".join(served["log"]), re.M))
    assert api_call(url, [[file_data(path)], "remove the rain", AUTO]).status_code == 200
    deadline = time.monotonic() + 3  # until the server says the request began (its queue starts it at once)
    while len(re.findall(r"^request: ", "".join(served["log"]), re.M)) == started and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)  # as a service manager stops it, while the upload is being restored
    proc.wait(timeout=120)
    served["reader"].join(timeout=10)
    out = "".join(served["log"])
    assert proc.returncode == 0, out
    assert "terminate called" not in out and "Traceback" not in out, out
    # uploads, results and examples lived in its own temporary folder, now gone
    assert list(served["tmp"].iterdir()) == []
    assert list(served["cwd"].iterdir()) == [] and list(served["home"].iterdir()) == []


def test_a_stop_during_start_up_removes_the_temporary_folder(tiny_ckpt, tmp_path):
    proc = subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--ckpt", str(tiny_ckpt), "--device", "cpu",
                             "--examples", "none", "--port", str(free_port())], cwd=tmp_path, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env=dict(os.environ, OMP_NUM_THREADS="1", TMPDIR=str(tmp_path)))
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob("textpromptir-app-*")):  # the temporary folder is made first
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, out
    assert "stopped (SIGTERM) during start-up" in out and "Traceback" not in out, out
    assert list(tmp_path.glob("textpromptir-app-*")) == []


def test_a_bad_checkpoint_stops_start_up_in_one_line(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    res = subprocess.run([sys.executable, str(ROOT / "app.py"), "--ckpt", str(bad), "--port", str(free_port())],
                         cwd=tmp_path, capture_output=True, text=True, timeout=300,
                         env=dict(os.environ, OMP_NUM_THREADS="1", TMPDIR=str(tmp_path)))
    assert res.returncode == 2
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "bad.pt" in lines[0], res.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.pt"]  # its temporary folder is gone
