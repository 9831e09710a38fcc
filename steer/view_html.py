"""The page of ``steer view``: one self-contained HTML file built from the dict of :mod:`steer.view_data`.

No model code here. The page has inline CSS and JavaScript of our own (``steer/view_assets``), the data as JSON
inside ``<script type="application/json">`` (with ``<``, ``>``, ``&`` and U+2028/2029 written as ``\\uXXXX``, so no
text can end the script element) and the score heatmap as inline SVG around an embedded PNG. A Content-Security-Policy
allows no request of any kind (``default-src 'none'``) and runs only our own script (by its sha256); the script puts
every text of the data on the page with ``textContent``, never as markup.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import math
import os
import struct
import zlib
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

HEAT_W, CELL_H = 960, 14  # heatmap width in px, row height per layer


def esc(text: object) -> str:
    """Text as HTML text or attribute value (quotes escaped too)."""
    return html.escape(str(text), quote=True)


def _clean(obj: Any) -> Any:
    """JSON-ready: numpy scalars and arrays as Python values, non-finite floats as None, keys as strings."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _clean(obj.tolist())
    if isinstance(obj, np.generic):
        return _clean(obj.item())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def script_json(obj: Any) -> str:
    """``obj`` as JSON that is safe inside a ``<script type="application/json">`` element: ``<``, ``>``, ``&``,
    U+2028 and U+2029 are written as ``\\uXXXX`` escapes (only strings can hold them, so the JSON is unchanged)."""
    text = json.dumps(_clean(obj), ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    for ch in ("<", ">", "&", "\u2028", "\u2029"):
        text = text.replace(ch, f"\\u{ord(ch):04x}")
    return text


def png(rgb: np.ndarray) -> bytes:
    """An RGB uint8 array [height, width, 3] as PNG bytes (no filter, zlib)."""
    h, w, _ = rgb.shape
    raw = b"".join(b"\x00" + rgb[y].astype(np.uint8).tobytes() for y in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    head = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", head) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")


def diverging(values: np.ndarray, vmax: float) -> np.ndarray:
    """Values in [-vmax, vmax] as RGB: blue (negative), white (0), red (positive)."""
    t = np.clip(np.nan_to_num(values) / (vmax or 1.0), -1, 1)[..., None]
    white = np.array([255.0, 255.0, 255.0])
    red, blue = np.array([178.0, 24.0, 43.0]), np.array([33.0, 102.0, 172.0])
    out = np.where(t >= 0, white + t * (red - white), white - t * (blue - white))
    return out.round().astype(np.uint8)


def heatmap_svg(heat: dict[str, Any], units: list[dict[str, Any]], score: str) -> str:
    """The score of every unit (rows: layers, columns: units) as an SVG around a PNG, the selected units marked
    (a click on a mark opens the unit)."""
    values = np.asarray(heat["values"], dtype=np.float64)
    layers = list(heat["layers"])
    n_layers, width = values.shape
    finite = np.abs(values[np.isfinite(values)])
    vmax = float(np.quantile(finite, 0.999)) if finite.size else 1.0
    img = base64.b64encode(png(diverging(values, vmax))).decode()
    ch = max(CELL_H, 60 // max(n_layers, 1))
    h = n_layers * ch
    left, top = 40, 8
    parts = [
        f'<svg class="heat" width="{HEAT_W + left + 10}" height="{h + top + 60}" role="img" '
        f'aria-label="{esc(score)} of every unit per layer" xmlns="http://www.w3.org/2000/svg">',
        f'<image x="{left}" y="{top}" width="{HEAT_W}" height="{h}" preserveAspectRatio="none" '
        f'href="data:image/png;base64,{img}"/>',
        f'<rect x="{left}" y="{top}" width="{HEAT_W}" height="{h}" fill="none" stroke="#999"/>',
    ]
    step = 1 if n_layers <= 32 else 5
    for j, layer in enumerate(layers):
        if j % step == 0:
            parts.append(
                f'<text x="{left - 4}" y="{top + (j + 0.75) * ch:.1f}" class="ax" text-anchor="end">{layer}</text>'
            )
    for k in range(5):
        u = round(k * (width - 1) / 4)
        x = left + (u + 0.5) / width * HEAT_W
        parts.append(f'<text x="{x:.1f}" y="{top + h + 14}" class="ax" text-anchor="middle">{u}</text>')
    parts.append(f'<text x="{left + HEAT_W / 2}" y="{top + h + 28}" class="ax" text-anchor="middle">unit index</text>')
    pos = {layer: j for j, layer in enumerate(layers)}
    for r in units:
        if r["layer"] not in pos:
            continue
        x = left + (r["index"] + 0.5) / width * HEAT_W
        y = top + (pos[r["layer"]] + 0.5) * ch
        d = f"M{x:.1f} {y - 2.5:.1f}l3 5h-6z" if r["side"] == "for" else f"M{x:.1f} {y + 2.5:.1f}l3 -5h-6z"
        parts.append(
            f'<path class="mk {r["side"]}" data-uid="{esc(r["id"])}" d="{d}">'
            f"<title>{esc(r['side'])} #{r['rank']}: layer {r['layer']}, unit {r['index']}</title></path>"
        )
    ly = top + h + 40
    parts.append(
        '<defs><linearGradient id="cbar"><stop offset="0" stop-color="rgb(33,102,172)"/>'
        '<stop offset="0.5" stop-color="#fff"/><stop offset="1" stop-color="rgb(178,24,43)"/></linearGradient></defs>'
        f'<rect x="{left}" y="{ly}" width="200" height="10" fill="url(#cbar)" stroke="#999"/>'
        f'<text x="{left}" y="{ly + 20}" class="ax">{-vmax:.3g}</text>'
        f'<text x="{left + 200}" y="{ly + 20}" class="ax" text-anchor="end">{vmax:.3g}</text>'
        f'<text x="{left + 215}" y="{ly + 9}" class="ax">{esc(score)} (colour clipped at the 99.9th percentile of '
        "|score|); ▲ units for, ▼ units against: click one</text></svg>"
    )
    return "".join(parts)


def asset(name: str) -> str:
    """A static file of the page (``steer/view_assets/<name>``)."""
    return resources.files("steer").joinpath("view_assets", name).read_text(encoding="utf-8")


def _csp_hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode() + "'"


def overview(meta: dict[str, Any]) -> str:
    """The page's head section: proposition, model, site, score and provenance, as escaped HTML."""
    prop = meta.get("proposition", {})
    worlds = meta.get("worlds", {}) or {}
    iv = meta.get("intervention", {})
    rows = [
        ("proposition", f"{prop.get('name', '?')}: {prop.get('description', '')} "
                        f"({meta.get('n_a')} of {meta.get('n_worlds')} worlds)"),
        ("model", f"{meta.get('model')} ({meta.get('identity', {}).get('architecture', '')})"),
        ("site", f"{meta.get('site')}, reduce {meta.get('reduce')}"),
        ("selection", f"{meta.get('score')}, k = {meta.get('k')} for and against"),
        ("worlds", f"{worlds.get('source', '?')} (template {worlds.get('template', '?')}, sha256 "
                   f"{str(worlds.get('prompt_set_sha256', worlds.get('worlds_sha256', '')))[:12]})"),
        ("steering rule", f"{iv.get('rule')}, coeff {iv.get('coeff')}, positions {iv.get('apply_to')}"),
        ("made", f"steer {meta.get('steer')}, {meta.get('created')}, in {meta.get('seconds')} s"),
    ]  # fmt: skip
    cells = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in rows)
    notes = "".join(f"<p class='note'>{esc(n)}</p>" for n in meta.get("notes", []))
    return f'<table class="meta">{cells}</table>{notes}'


def build(data: dict[str, Any]) -> str:
    """The whole page: overview, heatmap, unit table, unit panel and steering panel (filled in by the script)."""
    meta = data["meta"]
    body = {k: v for k, v in data.items() if k != "heatmap"}
    js, css = asset("view.js"), asset("view.css")
    csp = f"default-src 'none'; script-src {_csp_hash(js)}; style-src {_csp_hash(css)}; img-src data:"
    title = f"steer view: {meta.get('proposition', {}).get('name', '')} on {meta.get('model', '')}"
    heat = heatmap_svg(data["heatmap"], data["units"], str(meta.get("score"))) if data.get("heatmap") else ""
    return (
        "<!DOCTYPE html>\n"
        f'<html lang="en"><head><meta charset="utf-8">\n<meta http-equiv="Content-Security-Policy" content="{csp}">\n'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">\n<title>{esc(title)}</title>\n'
        f"<style>{css}</style></head>\n<body>\n<header><h1>{esc(title)}</h1>{overview(meta)}</header>\n"
        f'<section id="overview"><h2>{esc(meta.get("score"))} per layer and unit</h2>{heat}</section>\n'
        '<section id="units"><h2>Units for and against</h2><div id="filters"></div><div class="split">'
        '<div id="table-wrap"><table id="unit-table"></table></div><div id="panel"><p class="hint">'
        "Click a row (or a mark on the heatmap) to see the unit.</p></div></div></section>\n"
        '<section id="steering"><h2>Steering</h2><div id="steer-body"></div></section>\n'
        f'<script id="view-data" type="application/json">{script_json(body)}</script>\n'
        f"<script>{js}</script>\n</body></html>\n"
    )


class ViewPage(str):
    """The HTML of a ``steer view`` page (a ``str``); shown inline in a notebook (in an iframe), saved with
    :meth:`save`."""

    def _repr_html_(self) -> str:
        return f'<iframe srcdoc="{esc(self)}" style="width:100%;height:900px;border:1px solid #ddd"></iframe>'

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the page to ``path`` (UTF-8) and return the path."""
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_name(p.name + ".tmp")
        tmp.write_text(str(self), encoding="utf-8")
        tmp.replace(p)
        return p
