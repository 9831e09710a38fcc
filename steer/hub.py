"""The Hugging Face hub, asked quickly: is it reachable, is a repo cached. Offline answers come in seconds."""

from __future__ import annotations

import os

PROBE_TIMEOUT_S = 5.0


def offline_mode() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")


def hub_reachable(repo_id: str, kind: str = "model") -> bool:
    """True when the hub answers for ``repo_id`` within a few seconds; False when offline or unreachable.

    A repo the hub says does not exist raises the hub's own RepositoryNotFoundError (a clear user error)."""
    if offline_mode():
        return False
    from huggingface_hub import dataset_info, model_info
    from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

    info = model_info if kind == "model" else dataset_info
    try:
        info(repo_id, timeout=PROBE_TIMEOUT_S)
        return True
    except RepositoryNotFoundError:
        raise
    except HfHubHTTPError as e:  # the hub answered (gated, rate limited...): let the real load report it
        return e.response is not None
    except Exception:
        return False


def cached_model_dir(repo_id: str) -> str | None:
    """The local snapshot directory of a hub model when its config is in the HF cache, else None."""
    from huggingface_hub import try_to_load_from_cache

    try:
        path = try_to_load_from_cache(repo_id, "config.json")
    except Exception:
        return None
    return os.path.dirname(path) if isinstance(path, str) else None
