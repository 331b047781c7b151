"""app.py's page in a real browser (the system's Chromium driven by Playwright): a photo is uploaded,
restored and downloaded full-size; a text file named .png gets its message and the next photo still
works; the page asks nothing of any host but this machine; the app leaves nothing behind. The
request handler itself is tested without a browser in tests/test_page.py."""
from __future__ import annotations

import io
import os
import subprocess
import sys
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
    stop_app,
)


def skip_or_fail(reason: str) -> None:
    """Skip where the page's tools are missing, but never in CI (``make test`` installs them)."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI must run the browser tests)")
    pytest.skip(reason, allow_module_level=True)


try:
    import gradio  # noqa: F401
    import playwright  # noqa: F401
except ImportError as e:
    skip_or_fail(f"the page's tests need {e.name}: `make install` adds it")
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
    proc, url = start_app(["--ckpt", str(tiny_ckpt), "--device", "cpu", "--examples", str(demo)], free_port(), cwd,
                          env)
    state = {"proc": proc, "url": url, "cwd": cwd, "tmp": tmp, "home": home}
    yield state
    if proc.poll() is None:
        stop_app(proc)


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


def test_the_app_leaves_nothing_behind(served, browser):
    proc = served["proc"]
    assert proc.poll() is None
    out = stop_app(proc)
    assert proc.returncode == 0, out
    assert "Traceback" not in out
    # uploads, results and examples lived in its own temporary folder, now gone
    assert list(served["tmp"].iterdir()) == [] and list(served["cwd"].iterdir()) == []
    assert list(served["home"].iterdir()) == []


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
