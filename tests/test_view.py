"""``steer view``: the HTML builder (escaping, embedded JSON, the heatmap's PNG), the data it is built from on a tiny
model and on a plain network, bad arguments, and the command line. The browser test is tests/test_view_browser.py."""

from __future__ import annotations

import io
import json
import re

import numpy as np
import pytest
import torch

import steer
from steer.view_html import ViewPage, build, png, script_json
from tests.conftest import labelled_corpus

HOSTILE = "</script><script>alert('x')</script> \"quoted\" & 'single' <b>bold</b> café 日本 \u2028 \u2029 <!--"


def embedded(page: str) -> dict:
    m = re.search(r'<script id="view-data" type="application/json">(.*?)</script>', page, re.S)
    assert m, "no embedded data"
    return json.loads(m.group(1))


def test_script_json_cannot_end_the_script_element_and_round_trips():
    data = {"text": HOSTILE, "n": [1.5, float("nan"), np.float32(2.0)], HOSTILE: np.arange(3)}
    out = script_json(data)
    assert not set("<>&\u2028\u2029") & set(out)
    back = json.loads(out)
    assert back["text"] == HOSTILE and back[HOSTILE] == [0, 1, 2] and back["n"] == [1.5, None, 2.0]


def _synthetic(text: str = HOSTILE) -> dict:
    units = [
        {"id": f"{s[0]}1", "side": s, "rank": 1, "layer": 0, "index": i, "score": v, "mean": 0.0, "std": 1.0,
         "mean_a": v, "mean_c": -v, "detail": True}
        for s, i, v in (("for", 1, 0.5), ("against", 2, -0.5))
    ]  # fmt: skip
    det = {"top": [[0, 1.0]], "bottom": [[0, -1.0]], "quantile": [[0, 0.0]], "range": [-1.0, 1.0],
           "hist": {"lo": -1, "hi": 1, "a": [1, 2], "c": [2, 1]}, "tokens": {"0": [0.5, -0.5]},
           "promotes": [[7, 1.0]], "suppresses": [[7, -1.0]],
           "reads": [[7, 1.0]], "reads_neg": [[7, -1.0]]}  # fmt: skip
    return {
        "meta": {
            "proposition": {"name": text, "description": text},
            "model": text,
            "identity": {},
            "site": "mlp",
            "score": "D",
            "k": 1,
            "reduce": "mean",
            "worlds": {"source": text},
            "n_worlds": 1,
            "n_a": 1,
            "intervention": {"rule": "additive", "coeff": 3.0, "apply_to": "all"},
            "kind": "lm",
            "steer": "0",
            "created": "now",
            "detail": 1,
            "notes": [text],
            "has_stability": False,
            "seconds": 0,
        },
        "heatmap": {"layers": [0], "values": np.array([[0.0, 0.5, -0.5, 0.1]])},
        "units": units,
        "details": {"f1": det, "a1": det},
        "worlds": [{"text": text, "a": True, "fields": {"label": text}, "tokens": [7, 8]}],
        "vocab": {"7": text, "8": "<img src=x onerror=alert(1)>"},
        "steering": {
            "rule": "additive",
            "coeff": 3.0,
            "apply_to": "all",
            "max_new_tokens": 2,
            "seed": 0,
            "prompts": [{"prompt": text, "unsteered": text, "toward": [[7, 0.3]], "away": [[8, -0.3]]}],
        },
        "bench": None,
    }


def test_texts_are_escaped_in_the_markup_and_carried_exactly_in_the_data():
    page = build(_synthetic())
    assert page.count("<script") == 2  # the JSON data and our own script, nothing a text brought in
    assert "<b>bold</b>" not in page and "<img src=x" not in page and "alert('x')</script>" not in page
    assert "&lt;/script&gt;&lt;script&gt;" in page  # the title and overview show the text, escaped
    data = embedded(page)
    assert data["worlds"][0]["text"] == HOSTILE and data["vocab"]["8"] == "<img src=x onerror=alert(1)>"
    assert "heatmap" not in data  # drawn as SVG, not shipped twice


def test_the_page_allows_no_request_and_only_its_own_script():
    page = build(_synthetic("plain"))
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', page).group(1)
    assert "default-src 'none'" in csp and "script-src 'sha256-" in csp and "unsafe" not in csp
    # the only URLs are the SVG namespace (a name, not a request) and data: images
    assert set(re.findall(r"https?://[^\s\"')]+", page)) <= {"http://www.w3.org/2000/svg"}
    assert re.findall(r'(?:src|href)="(?!data:)', page) == []


def test_heatmap_png_decodes():
    from PIL import Image

    rgb = np.zeros((3, 5, 3), dtype=np.uint8)
    rgb[1, 2] = (255, 0, 10)
    img = Image.open(io.BytesIO(png(rgb)))
    assert img.size == (5, 3) and img.getpixel((2, 1)) == (255, 0, 10)


def test_view_page_shows_inline_in_a_notebook_and_saves(tmp_path):
    page = ViewPage(build(_synthetic()))
    frame = page._repr_html_()
    assert frame.startswith("<iframe srcdoc=") and "<script" not in frame  # the whole page, escaped
    assert page.save(tmp_path / "a" / "v.html").read_text(encoding="utf-8") == page


@pytest.fixture(scope="module")
def tiny_view(tiny_qwen):
    worlds = steer.Worlds.from_records(labelled_corpus(3))
    acts = steer.record(tiny_qwen, worlds, site="mlp", reduce="mean", progress=False)
    ns = acts.strength(worlds.proposition("positive")).top(k=4)
    page = steer.view(tiny_qwen, ns, worlds=worlds, detail=2, examples=3, prompts=["the film", "a quiet"],
                      max_new_tokens=4, explain=1)  # fmt: skip
    return page, ns


def test_view_of_a_tiny_language_model(tiny_view):
    page, ns = tiny_view
    data = embedded(page)
    assert [u["id"] for u in data["units"]] == ["f1", "f2", "f3", "f4", "a1", "a2", "a3", "a4"]
    f1 = data["details"]["f1"]
    assert len(f1["top"]) == 3 and len(f1["bottom"]) == 3 and f1["quantile"]
    assert len(f1["promotes"]) == 20 and len(f1["reads_neg"]) == 20 and "map" in f1 and f1["explain"]
    assert sum(f1["hist"]["a"]) + sum(f1["hist"]["c"]) == data["meta"]["n_worlds"] == 15
    assert "tokens" in f1 and "tokens" not in data["details"]["f3"]  # per-token detail for the top 2 only
    for w, vals in f1["tokens"].items():
        assert len(vals) == len(data["worlds"][int(w)]["tokens"])
    top_world = data["worlds"][f1["top"][0][0]]
    j = ns.units_for[0]
    assert top_world["text"] in steer.Worlds.from_records(labelled_corpus(3)).prompts and j.layer is not None
    steering = data["steering"]["prompts"]
    assert [p["prompt"] for p in steering] == ["the film", "a quiet"]
    assert all(isinstance(p["unsteered"], str) and all(len(t) == 2 for t in p["toward"]) for p in steering)
    assert data["meta"]["kind"] == "lm" and data["meta"]["k"] == 4


def test_view_of_a_plain_network_shows_its_inputs_as_images():
    from steer.eval.lenet import LeNet5

    torch.manual_seed(0)
    net = steer.Network(LeNet5(), "lenet-random")
    x = torch.rand(40, 1, 28, 28)
    worlds = steer.TensorWorlds.from_tensors(x, source="noise", label=[i % 2 for i in range(40)])
    acts = net.record(worlds, "act3")
    ns = acts.strength(worlds.proposition("label=1")).top(k=3)
    data = embedded(steer.view(net, ns, worlds=worlds, explain=0))
    assert len(data["units"]) == 6 and data["steering"] is None
    img = data["worlds"][0]["image"]
    assert (img["h"], img["w"]) == (28, 28) and len(img["pixels"]) == 784
    assert "promotes" not in data["details"]["f1"] and data["meta"]["kind"] == "network"


def test_bad_arguments_are_one_line_errors(tiny_view):
    _, ns = tiny_view
    with pytest.raises(ValueError, match="detail must be an integer >= 0"):
        steer.view(object(), ns, detail=-1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not both"):
        steer.view(object(), ns, toward="positive")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="TensorWorlds"):
        steer.view(steer.Network(torch.nn.Linear(2, 2)), ns)
    with pytest.raises(TypeError, match=r"steer\.Intervention"):
        steer.view(object(), ns, intervention="additive")  # type: ignore[arg-type]


def test_cli_view_flags():
    from steer.cli import build_parser

    args = build_parser().parse_args(["view", "--model", "bundled", "--out", "v.html", "--k", "50", "--detail", "0"])
    assert args.cmd == "view" and args.k == 50 and args.detail == 0 and args.rule is None and args.neurons is None
    with pytest.raises(SystemExit):
        build_parser().parse_args(["view", "--out", "v.html", "--detail", "-1"])
