"""Helpers shared by the benchmarks."""

from __future__ import annotations

import os
import threading
import time


class PeakRSS:
    """Peak resident memory above the starting level, sampled in a thread."""

    def __enter__(self):
        self.page = os.sysconf("SC_PAGE_SIZE")
        self.base = self.peak = self._rss()
        self.stop = False
        self.t = threading.Thread(target=self._watch, daemon=True)
        self.t.start()
        return self

    def _rss(self) -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * self.page

    def _watch(self):
        while not self.stop:
            self.peak = max(self.peak, self._rss())
            time.sleep(0.005)

    def __exit__(self, *exc):
        self.stop = True
        self.t.join()
        self.extra_mb = (self.peak - self.base) / 2**20


def write_result(name, figures, out=None):
    """Write ``docs/results/<name>/result.json`` (or ``out``): the command line, versions, machine, date and the
    run's raw figures, written whole (temp + rename). Returns the path."""
    import json
    import platform
    import sys
    from datetime import datetime, timezone
    from pathlib import Path

    import torch

    from steer.models import versions

    path = Path(out) if out else Path(__file__).resolve().parents[1] / "docs" / "results" / name / "result.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    run = {
        "bench": name,
        "command": " ".join(["python", f"bench/{Path(sys.argv[0]).name}", *sys.argv[1:]]),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "platform": platform.platform(), "processor": platform.machine()},
        "versions": versions(),
        "figures": figures,
    }
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(run, indent=1, default=str) + "\n")
    tmp.replace(path)
    print(f"wrote {path}")
    return path
