"""What a newcomer's first commands cost: ``import steer`` and ``steer --help`` load no torch, and the lazy package
still gives every public name."""

from __future__ import annotations

import json
import subprocess
import sys
import types

import pytest

import steer

# Every help loads no torch: the flags come from the torch-free configs (steer.configs, steer.eval.configs) and
# names (steer.names), and steer / steer.eval resolve their public names lazily.
TORCH_FREE_HELP = [
    [], ["find"], ["stability"], ["record"], ["generate"], ["demo"], ["export"], ["eval"], ["eval", "flip"],
    ["eval", "steer"], ["view"],
]
ALL_HELP = [
    [],
    ["find"],
    ["stability"],
    ["record"],
    ["generate"],
    ["demo"],
    ["export"],
    ["eval"],
    ["eval", "flip"],
    ["eval", "steer"],
    ["view"],
]

HELP = """
import contextlib, io, json, sys
from steer.cli import main
out = {}
for cmd in json.loads(sys.argv[1]):
    text = io.StringIO()
    with contextlib.redirect_stdout(text):
        try:
            main([*cmd, "--help"])
            code = 0
        except SystemExit as e:
            code = e.code
    out[" ".join(cmd)] = {"code": code, "help": text.getvalue(), "torch": "torch" in sys.modules}
print(json.dumps(out))
"""


def _helps(commands: list[list[str]]) -> dict[str, dict]:
    """Each command's ``--help`` run in a fresh interpreter: exit code, text, and whether torch got imported."""
    done = subprocess.run(
        [sys.executable, "-c", HELP, json.dumps(commands)], capture_output=True, text=True, timeout=300, check=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def _fresh(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    return done.stdout.strip()


@pytest.mark.parametrize("cmd", TORCH_FREE_HELP, ids=lambda c: " ".join(c) or "steer")
def test_help_imports_no_torch(cmd: list[str]) -> None:
    result = _helps([cmd])[" ".join(cmd)]
    assert result["code"] == 0
    assert "usage: steer" in result["help"]
    assert not result["torch"], f"steer {' '.join(cmd)} --help imported torch"


def test_every_command_help_still_shows_its_flags() -> None:
    results = _helps(ALL_HELP)
    for name, result in results.items():
        assert result["code"] == 0, name
        assert "usage: steer" in result["help"], name
    main = results[""]["help"]
    for cmd in ("find", "stability", "record", "generate", "demo", "export", "eval", "view"):
        assert cmd in main
    assert "--proposition" in results["find"]["help"] and "--scores" in results["find"]["help"]
    assert "--rule" in results["generate"]["help"] and "--max-new-tokens" in results["generate"]["help"]
    assert "--format" in results["export"]["help"]
    assert "--site" in results["record"]["help"] and "--shard-size" in results["record"]["help"]
    assert "flip" in results["eval"]["help"] and "--sst2" in results["eval flip"]["help"]
    assert "--detail" in results["view"]["help"]


def test_bad_flag_of_a_lazy_command_is_an_error() -> None:
    from steer.cli import build_parser

    parser = build_parser()
    with pytest.raises(SystemExit) as e:
        parser.parse_args(["record", "--out", "x", "--no-such-flag"])
    assert e.value.code == 2
    args = parser.parse_args(["record", "--out", "x", "--site", "resid"])
    assert args.cmd == "record" and args.site == "resid" and args.reduce == "last"


def test_the_evaluation_package_and_its_configs_load_without_torch() -> None:
    out = _fresh(
        "import sys\n"
        "import steer.eval as e\n"
        "from steer.eval.configs import FlipItems, FlipWorlds, SteeringEvalConfig, UnitChoice\n"
        "print('torch' in sys.modules, FlipWorlds().n, SteeringEvalConfig().k, UnitChoice().k)\n"
        "print(e.FlipConfig().pos2neg.value, 'torch' in sys.modules, e.matched.__name__)\n"
    )
    first, second = out.splitlines()[-2:]
    assert first == "False 1024 500 5"
    assert second == "5.0 True steer.eval.matched"


def test_configs_are_built_and_checked_without_torch() -> None:
    out = _fresh(
        "import sys\n"
        "from steer.configs import FindConfig, GenerationConfig, SteerConfig\n"
        "c = SteerConfig(rule='linear-transport', coeff=0.5); GenerationConfig(top_p=0.5); FindConfig()\n"
        "bad = []\n"
        "for kw in ({'rule': 'nope'}, {'coeff': -1.0}, {'apply_to': 'middle'}):\n"
        "    try:\n"
        "        SteerConfig(**kw)\n"
        "    except ValueError as e:\n"
        "        bad.append(str(e).split(';')[0].split(',')[0])\n"
        "print('torch' in sys.modules, c.rule, bad)\n"
        "print(c.intervention.value, 'torch' in sys.modules)\n"
    )
    first, second = out.splitlines()[-2:]
    assert first.startswith("False linear-transport") and "unknown rule 'nope'" in first
    assert "coeff must be >= 0" in first and "unknown apply_to 'middle'" in first
    assert second == "0.5 True"  # the intervention (and torch) load on first use


def test_import_steer_is_light_and_names_load_on_use() -> None:
    out = _fresh(
        "import sys, steer\n"
        "light = 'torch' not in sys.modules\n"
        "ok = callable(steer.generate) and steer.Steerer.__name__ == 'Steerer'\n"
        "print(light, ok, 'torch' in sys.modules)"
    )
    assert out == "True True True"


def test_from_steer_import_and_version_need_no_torch() -> None:
    out = _fresh(
        "import sys\nfrom steer import __version__, DEFAULT_PROMPT_SET\n"
        "print(bool(__version__ and DEFAULT_PROMPT_SET), 'torch' in sys.modules)"
    )
    assert out == "True False"


def test_all_names_resolve_and_are_listed() -> None:
    assert len(steer.__all__) == len(set(steer.__all__)) == 40
    assert set(steer.__all__) <= set(dir(steer))
    for name in steer.__all__:
        assert getattr(steer, name) is not None, name
    with pytest.raises(AttributeError):
        steer.no_such_name  # noqa: B018
    out = _fresh("import steer\nprint(bool(steer.export.FORMATS), steer.fold.__name__)")
    assert out == "True steer.fold"
    ns: dict[str, object] = {}
    exec("from steer import *", ns)
    assert set(steer.__all__) <= set(ns)


def test_record_is_the_function_not_the_submodule() -> None:
    import steer.record  # the import system sets the submodule on the package; the function stays

    assert callable(steer.record) and not isinstance(steer.record, types.ModuleType)
    assert steer.record is sys.modules["steer.record"].record
    out = _fresh("import steer.select, steer\nprint(steer.record.__module__, type(steer.record).__name__)")
    assert out == "steer.record function"
