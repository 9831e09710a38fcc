"""The manifest of an export folder (``steer_export.json``): what was exported, from what, and the sha256 of every
file beside it, sealed with the sha256 of its own content; :func:`verify_export` checks a folder against it."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from steer.artifacts import ArtifactMismatchError, read_regular, sealed, unseal
from steer.cache import hash_file
from steer.fold import SteeringExport


def write_manifest(folder: Path, content: dict[str, Any]) -> None:
    """``steer_export.json``, written last: the manifest with the sha256 of every file beside it, sealed with the
    sha256 of its own content (:func:`verify_export` checks both)."""
    files = {p.name: hash_file(p) for p in sorted(folder.iterdir()) if p.is_file() and p.name != "steer_export.json"}
    body = json.loads(json.dumps({**content, "files": files}, default=str))
    (folder / "steer_export.json").write_text(json.dumps(sealed(body), indent=1) + "\n")


def verify_export(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Check an export folder against its ``steer_export.json``: the manifest against its own sha256, then every
    file it lists against its sha256 (a file edited, removed or swapped is an ArtifactMismatchError naming it).

    Returns:
        The manifest (without its sha256).
    """
    folder = Path(path)
    manifest_path = folder / "steer_export.json"
    if not manifest_path.is_file():
        raise FileNotFoundError(f"{folder} is not a steer export (no steer_export.json)")
    try:
        obj = json.loads(read_regular(manifest_path, "steer export manifest"))
    except json.JSONDecodeError as e:
        raise ArtifactMismatchError(f"{manifest_path} is not valid JSON ({e.msg})") from None
    body = unseal(obj, f"the export manifest {manifest_path}")
    for name, digest in body.get("files", {}).items():
        f = folder / name
        if not f.is_file() or f.is_symlink():
            raise ArtifactMismatchError(f"the export {folder} lacks {name} (listed in its manifest)")
        if hash_file(f) != digest:
            raise ArtifactMismatchError(f"{f} does not match the sha256 in its export manifest: it was changed")
    return body


def manifest(form: SteeringExport, fmt: str) -> dict[str, Any]:
    return {
        "kind": "steer_export",
        "format": fmt,
        "model_hint": form.model_hint,
        "n_layers": form.n_layers,
        "d_model": form.d_model,
        "vector_layers": sorted(form.vectors),
        "layer_mass": form.layer_mass(),
        "scaled_columns": {str(k): len(idx) for k, (idx, _) in sorted(form.column_scales.items())},
        "provenance": form.metadata,
    }
