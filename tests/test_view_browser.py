"""``steer view`` pages in a real browser: Debian's headless ``chromium``, driven over the DevTools protocol on a
pipe (tests/chromium_cdp.py, standard library only; nothing downloads a browser). The page loads with no console
error and no network request, the unit table has its rows, a click on a row opens the unit's panel with coloured
tokens, and a screenshot is not blank. Skipped where chromium is absent: ``apt-get install -y chromium``, then
``python -m pytest tests/test_view_browser.py`` (CI installs it in .ci/run)."""

from __future__ import annotations

import io

import pytest
import torch

import steer
from tests.chromium_cdp import Browser, find_browser
from tests.conftest import labelled_corpus

BROWSER = find_browser()
pytestmark = pytest.mark.skipif(
    BROWSER is None, reason="Debian's chromium is not installed (apt-get install -y chromium; .ci/run installs it)"
)


def check_page(path, n_units: int, tokens: bool = True, digits: bool = False) -> bytes:
    """Open a page, click its first unit row, and check what a person would see; returns the screenshot."""
    assert BROWSER is not None
    url = path.resolve().as_uri()
    with Browser(BROWSER) as b:
        b.open(url)
        assert b.evaluate("document.querySelectorAll('#unit-table tbody tr.unit').length") == n_units
        assert b.evaluate("document.getElementById('panel-title')") is None
        b.click("#unit-table tbody tr.unit")
        title = b.evaluate("document.getElementById('panel-title').textContent")
        assert title.startswith("unit for #1: layer ")
        coloured = b.evaluate(
            "[...document.querySelectorAll('#panel .examples .tok')].filter(s => s.style.backgroundColor).length"
        )
        assert (coloured > 0) == tokens
        if tokens:
            hover = b.evaluate("document.querySelector('#panel .examples .tok').title")
            assert hover.startswith("activation ")
            assert b.evaluate("document.querySelectorAll('#panel .chip').length") >= 4  # writes and reads
            assert b.evaluate("document.querySelectorAll('#steer-body .gen .tok').length") > 0
        if digits:
            assert b.evaluate("document.querySelectorAll('#panel canvas.digit').length") > 0
        # sorting and filtering
        b.click("#unit-table th[data-key='score']")
        b.evaluate("(() => { const q = document.getElementById('side-filter'); q.value = 'against';"
                   " q.dispatchEvent(new Event('change')); })()")  # fmt: skip
        assert b.evaluate("document.querySelectorAll('#unit-table tbody tr.unit').length") == n_units // 2
        shot = b.screenshot()
        assert b.errors() == []
        assert [u for u in b.requests() if not u.startswith("data:")] == [url]
    return shot


def not_blank(shot: bytes) -> None:
    from PIL import Image

    img = Image.open(io.BytesIO(shot)).convert("RGB")
    assert img.size[0] > 500 and len(set(img.resize((200, 150)).getdata())) > 50


def test_tiny_model_page_in_chromium(tiny_qwen, tmp_path):
    worlds = steer.Worlds.from_records(labelled_corpus(3))
    acts = steer.record(tiny_qwen, worlds, site="mlp", reduce="mean", progress=False)
    ns = acts.strength(worlds.proposition("positive")).top(k=5)
    out = tmp_path / "tiny.html"
    steer.view(tiny_qwen, ns, worlds=worlds, out=out, detail=5, prompts=["the film"], max_new_tokens=4)
    not_blank(check_page(out, 10))


def test_bundled_positive_set_page_in_chromium(bundled, tmp_path):
    """The bundled model's positive set (the default selection at k = 50 to keep the test short)."""
    out = tmp_path / "bundled.html"
    cfg = steer.SteerConfig(k=50)
    steer.view(bundled, toward="positive", config=cfg, out=out, detail=3, explain=1, prompts=["The hotel was"],
               max_new_tokens=6, progress=False)  # fmt: skip
    not_blank(check_page(out, 100))


def test_lenet_page_in_chromium(tmp_path):
    from steer.eval.lenet import LeNet5

    torch.manual_seed(0)
    net = steer.Network(LeNet5(), "lenet-random")
    worlds = steer.TensorWorlds.from_tensors(torch.rand(30, 1, 28, 28), label=[i % 3 for i in range(30)])
    ns = net.record(worlds, "act4").strength(worlds.proposition("label=1")).top(k=4)
    out = tmp_path / "lenet.html"
    steer.view(net, ns, worlds=worlds, out=out, explain=0)
    not_blank(check_page(out, 8, tokens=False, digits=True))
