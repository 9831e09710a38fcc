"""Size and speed of ``steer view``: the page of the default positive set (500 + 500 units) on the bundled model.

    python bench/view.py --threads 1          # writes docs/results/view/result.json (and the page under /tmp)

The neuron set and its recording are selected first (cached on disk as for ``steer generate``; their time is
reported separately), then the page is built and timed: score heatmap, every unit's examples, histogram, written and
read tokens and rule map, per-token activations for the top ``--detail`` units of each side, the steering panel.
On 2 cores shared with other jobs, torch's 2 threads spin against each other (a forward was 3-4x slower than with
one thread here), so the stored run uses ``--threads 1``; the result records the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import sys
import time
from pathlib import Path

import torch

import steer
from steer.models import versions

ROOT = Path(__file__).resolve().parents[1]


def _timings(page: str) -> dict[str, float]:
    """The page's own per-phase build times (stored in its data)."""
    m = re.search(r'<script id="view-data" type="application/json">(.*?)</script>', page, re.S)
    return json.loads(m.group(1))["meta"]["timings"] if m else {}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="bundled")
    p.add_argument("--detail", type=int, default=50)
    p.add_argument("--page", default="/tmp/steer-view-bundled-positive.html")
    p.add_argument("--out", default=str(ROOT / "docs/results/view"))
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own choice)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    model = steer.load_model(args.model)
    cfg = steer.SteerConfig()
    worlds = cfg.worlds()
    t0 = time.time()
    ns = steer.steering_neurons(model, worlds, "positive", cfg, progress=False)
    steer.recording(cfg.select_spec(model, worlds, worlds.proposition("positive")).recording, progress=False)
    select_s = time.time() - t0
    t0 = time.time()
    page = steer.view(model, ns, worlds=worlds, config=cfg, out=args.page, detail=args.detail)
    build_s = time.time() - t0
    result = {
        "kind": "view",
        "command": "python " + " ".join([str(Path(sys.argv[0]).relative_to(ROOT)) if Path(sys.argv[0]).is_absolute()
                                         else sys.argv[0], *sys.argv[1:]]),
        "model": model.name,
        "proposition": ns.proposition["name"],
        "n_units": len(ns.units_for) + len(ns.units_against),
        "detail_per_side": args.detail,
        "page_bytes": len(page.encode("utf-8")),
        "build_seconds": round(build_s, 1),
        "select_seconds": round(select_s, 1),
        "versions": versions(),
        "timings": _timings(page),
        "torch_threads": torch.get_num_threads(),
        "machine": {"cores": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "load_average_1m": round(os.getloadavg()[0], 2)},
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }  # fmt: skip
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "result.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
