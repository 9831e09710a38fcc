"""The public surface is the contract: the library never imports the evaluation harness, notebooks use public names
only (bench scripts may import from modules, but only names that exist), every public callable is documented, and
the renamed words stay gone."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
import json
import subprocess
import sys
from dataclasses import fields, is_dataclass
from importlib.metadata import version
from pathlib import Path

import pytest

import steer
import steer.eval

ROOT = Path(__file__).resolve().parents[1]
LIBRARY = [p for p in (ROOT / "steer").glob("*.py") if p.name != "cli.py"]  # the CLI is a front end
PUBLIC = {"steer": set(steer.__all__), "steer.eval": set(steer.eval.__all__)}


def _imports(tree: ast.AST) -> list[tuple[str, list[str]]]:
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, []) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.module, [a.name for a in node.names]))
    return out


@pytest.mark.parametrize("path", LIBRARY, ids=lambda p: p.name)
def test_the_library_never_imports_the_harness(path):
    for module, names in _imports(ast.parse(path.read_text())):
        assert not module.startswith("steer.eval"), f"{path.name} imports {module}"
        assert not (module == "steer" and "eval" in names), f"{path.name} imports steer.eval"


def test_importing_steer_does_not_load_the_harness():
    code = "import sys, steer; steer.generate; print(any(m.startswith('steer.eval') for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "False"


def _notebooks() -> list[tuple[str, str]]:
    out = []
    for nb in sorted((ROOT / "notebooks").glob("*.ipynb")):
        cells = json.loads(nb.read_text())["cells"]
        code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
        out.append((f"notebooks/{nb.name}", code))
    return out


def _bench_scripts() -> list[tuple[str, str]]:
    return [(f"bench/{p.name}", p.read_text()) for p in sorted((ROOT / "bench").glob("*.py"))]


@pytest.mark.parametrize("name, source", _notebooks(), ids=lambda x: x if "/" in str(x) else "")
def test_notebooks_use_public_names_only(name, source):
    tree = ast.parse(source)
    for module, names in _imports(tree):
        if module == "steer" or module.startswith("steer."):
            assert module in PUBLIC, f"{name}: imports the submodule {module}; use `steer` or `steer.eval`"
            private = sorted(set(names) - PUBLIC[module])
            assert not private, f"{name}: {private} are not in {module}.__all__"
    for node in ast.walk(tree):  # steer.<name> and steer.eval.<name>
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "steer":
            assert node.attr in PUBLIC["steer"] or node.attr == "eval", f"{name}: steer.{node.attr} is not public"


def _has(module: object, name: str) -> bool:
    """``from module import name`` works: an attribute, or a submodule of a package."""
    if hasattr(module, name):
        return True
    return hasattr(module, "__path__") and importlib.util.find_spec(f"{module.__name__}.{name}") is not None


@pytest.mark.parametrize("name, source", _bench_scripts(), ids=lambda x: x if "/" in str(x) else "")
def test_bench_scripts_import_names_that_exist(name, source):
    """Bench scripts may import from any module of the package (``from steer.eval.matched import ...``), not only
    from ``steer`` / ``steer.eval``; every module and name they import must exist."""
    tree = ast.parse(source)
    for module, names in _imports(tree):
        if module == "steer" or module.startswith("steer."):
            try:
                mod = importlib.import_module(module)
            except ModuleNotFoundError:
                pytest.fail(f"{name}: imports {module}, which does not exist")
            missing = sorted(n for n in names if not _has(mod, n))
            assert not missing, f"{name}: {module} has no {missing}"
    for node in ast.walk(tree):  # steer.<name>
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "steer":
            assert hasattr(steer, node.attr), f"{name}: steer.{node.attr} does not exist"


def _public_callables():
    for mod, names in (("steer", steer.__all__), ("steer.eval", steer.eval.__all__)):
        namespace = steer if mod == "steer" else steer.eval
        for n in names:
            obj = getattr(namespace, n)
            if callable(obj) and not n.startswith("__"):
                yield f"{mod}.{n}", obj


def test_every_public_name_exists_and_is_documented():
    for mod, names in PUBLIC.items():
        namespace = steer if mod == "steer" else steer.eval
        for n in names:
            assert hasattr(namespace, n), f"{mod}.__all__ names {n}, which does not exist"
    undocumented = [name for name, obj in _public_callables() if not inspect.getdoc(obj)]
    assert not undocumented, undocumented


# The words that meant two things before the API was settled (see the README's list of renames): "strength" is
# D alone (Activations.strength, Strengths, FindResult.strengths), never the intervention's knob (coeff).
RETIRED = {"strength", "strengths", "position", "positions", "K", "caa_strengths"}
MEANS_D = {("steer.FindResult", "strengths")}


def test_retired_names_are_gone_from_public_signatures_and_configs():
    found = []
    for name, obj in _public_callables():
        targets = [obj] + ([getattr(obj, m) for m in vars(obj) if not m.startswith("_") and callable(getattr(obj, m))]
                           if inspect.isclass(obj) else [])
        for t in targets:
            try:
                params = inspect.signature(t).parameters
            except (TypeError, ValueError):
                continue
            found += [f"{name}: parameter {p}" for p in params if p in RETIRED and (name, p) not in MEANS_D]
        if is_dataclass(obj):
            found += [f"{name}: field {f.name}" for f in fields(obj) if f.name in RETIRED and (name, f.name) not in MEANS_D]
    assert not found, found


def test_steerer_direction_is_a_word_and_generate_toward_is_a_proposition():
    assert inspect.signature(steer.Intervention).parameters["direction"].default == "toward"
    assert inspect.signature(steer.generate).parameters["toward"].default == "positive"


def test_the_steerer_takes_the_intervention_whole():
    """One Intervention from config to hook: the Steerer has no rule/coeff/direction/apply_to parameters of its own,
    and the config's intervention is built once (the same object every time it is asked for)."""
    params = inspect.signature(steer.Steerer).parameters
    assert "intervention" in params and not {"rule", "coeff", "direction", "apply_to"} & set(params)
    cfg = steer.SteerConfig().resolve(coeff=4.0)
    assert cfg.intervention is cfg.intervention and cfg.intervention.value == 4.0


def test_the_public_surface_is_small():
    assert len(steer.__all__) <= 40, len(steer.__all__)


def test_version_is_the_installed_one():
    assert steer.__version__ == version("steer")


def test_cli_defaults_come_from_the_configs():
    """A flag left out leaves the config's value: the parser's own defaults for steering options are None."""
    from steer.cli import build_parser

    args = build_parser().parse_args(["generate", "hi"])
    for option in ("k", "rule", "coeff", "score", "site", "reduce", "apply_to", "max_new_tokens", "seed"):
        assert getattr(args, option) is None, option
    help_text = build_parser()._subparsers._group_actions[0].choices["generate"].format_help()
    assert f"(default: {steer.SteerConfig().k})" in help_text
