"""The web page's request handler (utils/runtime/page.py) without a browser or Gradio: uploads are
decoded by the project's reader and come back full-size in their own format, and every bad input
becomes a message while the next request still works."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from conftest import TINY_CONFIG, png_claiming
from PIL import Image

from net.model import ModelConfig, TextPromptIR
from utils.checkpoint import save_checkpoint
from utils.runtime.engine import Restorer
from utils.runtime.page import AUTO, INSTRUCTION_LABEL, TASK_LABEL, PageRestorer, page_words, preview


@pytest.fixture(scope="module")
def page(tiny_ckpt, tmp_path_factory) -> PageRestorer:
    return PageRestorer(Restorer(tiny_ckpt, "cpu"), tmp_path_factory.mktemp("results"), max_pixels=10_000)


def photo(path: Path, h: int = 24, w: int = 40, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)
    return path


def test_a_photo_comes_back_full_size_in_its_format_and_changed(page, tmp_path):
    src = photo(tmp_path / "street.jpg", 24, 40)
    reply = page([src], "please remove the rain", AUTO)
    assert reply.errors == []
    [result] = reply.results
    assert result.path.name == "street_restored.jpg" and result.path.parent.parent == page.work_dir
    out = np.asarray(Image.open(result.path))
    assert out.shape == (24, 40, 3)
    assert np.abs(out.astype(int) - np.asarray(Image.open(src)).astype(int)).mean() > 1
    assert result.before.shape == result.after.shape == (24, 40, 3) and result.after.dtype == np.uint8
    assert any(line.startswith("instruction: \"") and " -> " in line for line in reply.report)
    assert reply.report[-1].startswith("time taken:")


def test_sixteen_bit_grey_and_transparency_survive(page, tmp_path):
    rng = np.random.default_rng(1)
    deep = rng.integers(0, 65536, (20, 28, 3), dtype=np.uint16)
    cv2.imwrite(str(tmp_path / "deep.png"), deep)
    Image.fromarray(rng.integers(0, 256, (18, 22), dtype=np.uint8)).save(tmp_path / "grey.png")
    rgba = rng.integers(0, 256, (16, 16, 4), dtype=np.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "alpha.png")
    reply = page([tmp_path / "deep.png", tmp_path / "grey.png", tmp_path / "alpha.png"], None, "denoise")
    assert reply.errors == [] and len(reply.results) == 3
    deep_out = cv2.imread(str(reply.results[0].path), cv2.IMREAD_UNCHANGED)
    assert deep_out.dtype == np.uint16 and deep_out.shape == deep.shape
    assert Image.open(reply.results[1].path).mode == "L"
    alpha_out = np.asarray(Image.open(reply.results[2].path))
    np.testing.assert_array_equal(alpha_out[..., 3], rgba[..., 3])
    assert any("forced task denoise" in line for line in reply.report)


def test_a_text_file_named_png_is_a_message_and_the_next_request_works(page, tmp_path):
    fake = tmp_path / "cache" / "holiday.png"
    fake.parent.mkdir()
    fake.write_text("not an image at all\n")
    reply = page([fake], "remove the noise", AUTO)
    assert reply.results == []
    [error] = reply.errors
    assert error.startswith("holiday.png: cannot read this image") and str(fake.parent) not in error
    good = page([photo(tmp_path / "good.png")], "remove the noise", AUTO)
    assert good.errors == [] and len(good.results) == 1


def test_a_quote_the_browser_sent_as_percent_22_is_a_quote_again(page, tmp_path):
    # a browser's upload form sends the file name 'my "best" shot.png' as 'my %22best%22 shot.png'
    reply = page([photo(tmp_path / "my %22best%22 shot.png")], "remove the noise", AUTO)
    [result] = reply.results
    assert result.name == 'my "best" shot.png' and result.path.name == 'my "best" shot_restored.png'
    assert any(line.startswith('my "best" shot.png: 40x24') for line in reply.report)


def test_one_bad_upload_does_not_stop_the_others(page, tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    reply = page([tmp_path / "notes.txt", photo(tmp_path / "ok.png")], "remove the fog", AUTO)
    assert [r.name for r in reply.results] == ["ok.png"]
    assert len(reply.errors) == 1 and reply.errors[0].startswith("notes.txt: not an image type")


def test_an_image_over_the_pixel_limit_names_the_limit(page, tmp_path):
    reply = page([png_claiming(tmp_path / "huge.png", 200, 100)], "remove the noise", AUTO)
    assert reply.results == []
    assert len(reply.errors) == 1 and "20,000 pixels" in reply.errors[0] and "10,000" in reply.errors[0]


def test_no_instruction_and_no_task_asks_for_one(page, tmp_path):
    reply = page([photo(tmp_path / "a.png"), photo(tmp_path / "b.png")], "   ", AUTO)
    assert reply.results == []
    # said once for the request, not once per image; the checkpoint has no image classifier
    assert len(reply.errors) == 1 and "instruction" in reply.errors[0]
    # in the page's own words: its task menu, not a command-line option the page does not have
    assert f"the {TASK_LABEL} menu" in reply.errors[0] and "--task" not in reply.errors[0]


def test_messages_name_the_pages_controls_not_command_line_options():
    from net.degradation_classifier import check_size
    from utils.errors import UserError
    from utils.runtime.engine import disagreement

    with pytest.raises(UserError) as e:
        check_size(10, 10, "a.png")
    small = page_words(str(e.value))
    assert small.endswith(f'name the task with the "{INSTRUCTION_LABEL}" box or the {TASK_LABEL} menu')
    [mixed] = disagreement(("derain",), {"derain": 0.01, "dehaze": 0.99})
    assert page_words(mixed).endswith(f'(an empty "{INSTRUCTION_LABEL}" box follows the image)')
    off_topic = 'or force a task with --task derain; or the tasks with --task'
    assert page_words(off_topic) == f"or force a task with the {TASK_LABEL} menu set to derain; or the tasks with " \
                                    f"the {TASK_LABEL} menu"
    for line in (small, page_words(mixed), page_words(off_topic)):
        assert "--task" not in line and "--instruction" not in line


def test_nothing_uploaded_or_too_much(page, tmp_path):
    assert "upload an image" in page(None, "remove the rain", AUTO).errors[0]
    many = [tmp_path / f"{i}.png" for i in range(page.max_images + 1)]
    assert "at most" in page(many, "remove the rain", AUTO).errors[0]


def test_the_task_menu_is_the_checkpoints(page):
    assert page.task_choices == [AUTO, *page.restorer.tasks]


def test_two_uploads_of_one_name_keep_both_results(page, tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "y").mkdir()
    reply = page([photo(tmp_path / "x" / "p.png"), photo(tmp_path / "y" / "p.png", seed=3)], None, "derain")
    assert reply.errors == []
    assert sorted(r.path.name for r in reply.results) == ["p_2_restored.png", "p_restored.png"]


def test_a_nan_result_is_a_message_and_the_page_goes_on(tmp_path, text_ckpt):
    net = TextPromptIR(ModelConfig(**TINY_CONFIG))
    with torch.no_grad():
        net.output.weight.fill_(3e38)  # finite weights, inf/NaN outputs
    bad = tmp_path / "bad.pt"
    save_checkpoint(bad, {"model": net.state_dict(), "config": net.config.to_dict(),
                          "text_encoder": {"dir": str(text_ckpt), "id": "test"}})
    page = PageRestorer(Restorer(bad, "cpu"), tmp_path / "results", max_pixels=10_000)
    src = photo(tmp_path / "a.png")
    for _ in range(2):  # the second request meets the same clear message, not a dead page
        reply = page([src], "remove the rain", AUTO)
        assert reply.results == [] and len(reply.errors) == 1
        assert reply.errors[0].startswith("a.png:") and "NaN/inf" in reply.errors[0]
    assert not list((tmp_path / "results").rglob("*.png"))  # no black picture offered


def test_old_results_are_removed(tiny_ckpt, tmp_path):
    page = PageRestorer(Restorer(tiny_ckpt, "cpu"), tmp_path / "results", max_pixels=10_000, keep_s=0)
    first = page([photo(tmp_path / "a.png")], None, "denoise").results[0].path
    assert first.exists()
    page([photo(tmp_path / "b.png")], None, "denoise")
    assert not first.exists()


def test_previews_are_8_bit_and_bounded():
    big = np.random.default_rng(0).random((300, 1200, 3), dtype=np.float32)
    small = preview(big, side=400)
    assert small.shape == (100, 400, 3) and small.dtype == np.uint8
    assert preview(big[:10, :10]).shape == (10, 10, 3)


def test_a_stop_cancels_the_request_in_progress_and_refuses_the_next(tiny_ckpt, tmp_path):
    import threading

    page = PageRestorer(Restorer(tiny_ckpt, "cpu"), tmp_path / "results", max_pixels=10**7)
    started = threading.Event()

    def forward_begins(*_):
        started.set()
        threading.Event().wait(0.5)  # time for the stop below to come: it lands inside this forward

    page.restorer.model.register_forward_pre_hook(forward_begins)
    replies = []
    request = threading.Thread(target=lambda: replies.append(page([photo(tmp_path / "big.png", 600, 600)], None,
                                                                  "derain")))
    request.start()
    assert started.wait(60)
    assert page.stop(timeout_s=60)  # the request ended: cancelled at the network's next stage
    request.join()
    [reply] = replies
    assert reply.results == [] and reply.errors == ["big.png: the page is stopping; not restored"]
    assert not list((tmp_path / "results").rglob("*.png"))
    assert page([photo(tmp_path / "a.png")], None, "derain").errors == ["the page is stopping: nothing was restored"]
