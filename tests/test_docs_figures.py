"""Every figure the docs quote next to a stored result is in that result: a paragraph of README.md or docs/*.md that
links a ``docs/results/<bench>/result.json`` may quote only numbers that the file holds (at the quoted precision;
a percentage as its share). Figures from runs whose file was not kept are said to be so and link no result."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\(([^()\s]*results/[^()\s]*result\.json)\)")
NUMBER = re.compile(r"(?<![\w.-])(\d{1,3}(?:,\d{3})+|\d+\.\d+|\d{3,})(%?)(?![\w.])")


def _numbers(obj):
    if isinstance(obj, bool):
        return
    if isinstance(obj, (int, float)):
        yield float(obj)
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _numbers(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _numbers(v)


def _held(text: str, percent: bool, values: list[float]) -> bool:
    q = float(text.replace(",", ""))
    decimals = len(text.split(".")[1]) if "." in text else 0
    for v in values:
        for x in ((v * 100, v) if percent else (v, v * 100, v / 1e9, v / 2**20, v / 1e6)):
            if round(x, decimals) == q:
                return True
    return False


def _cases():
    for page in PAGES:
        for para in re.split(r"\n\s*\n", page.read_text()):
            for link in LINK.findall(para):
                path = (page.parent / link).resolve()
                if not path.is_relative_to(ROOT / "docs" / "results"):
                    path = ROOT / "docs" / link[link.index("results/"):]
                yield pytest.param(page, para, path, id=f"{page.name}:{link}")


@pytest.mark.parametrize("page, para, path", list(_cases()))
def test_quoted_figures_are_in_their_result_file(page, para, path):
    assert path.is_file(), f"{page.name} links {path}, which does not exist"
    values = list(_numbers(json.loads(path.read_text())))
    text = LINK.sub("", para)
    missing = [n + p for n, p in NUMBER.findall(text) if not _held(n, bool(p), values)]
    assert not missing, f"{page.name}: {missing} are not in {path.relative_to(ROOT)}"
