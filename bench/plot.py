#!/usr/bin/env python3
"""Plot whole-table search recall@10 against p50 latency per hnsw.ef_search.

Reads the CSV that `mockinterview-bench` writes (recall_latency.csv) and
writes a PNG next to it (or to the path given second).

    pip install matplotlib
    python3 bench/plot.py bench/results/quick/recall_latency.csv [out.png]
"""

import csv
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

LIBRARY_DEFAULT_EF = 100
TARGET_RECALL = 0.95


def main() -> None:
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    src = Path(sys.argv[1])
    out = Path(sys.argv[2]) if len(sys.argv) > 2 else src.with_suffix(".png")
    rows = list(csv.DictReader(src.open()))
    ef = [int(r["ef_search"]) for r in rows]
    recall = [float(r["recall_at_10"]) for r in rows]
    p50 = [float(r["p50_ms"]) for r in rows]
    p95 = [float(r["p95_ms"]) for r in rows]

    fig, ax = plt.subplots(figsize=(7.5, 4.8), dpi=130)
    plans = [r.get("plan", "") for r in rows]
    ax.plot(p50, recall, "o-", color="tab:blue", label="p50 latency")
    ax.plot(p95, recall, "s--", color="tab:gray", alpha=0.5, markersize=4, label="p95 latency")
    for i, (e, x, y, plan) in enumerate(zip(ef, p50, recall, plans)):
        bold = e == LIBRARY_DEFAULT_EF
        label = f"ef={e}" + (" (library default)" if bold else "")
        offset, ha = ((8, -14), "left") if i % 2 == 0 else ((-12, 6), "right")
        if plan and "HNSW" not in plan:
            label += f"\nplanner: {plan}"
            offset, ha = (-10, -30), "right"
        ax.annotate(
            label,
            (x, y),
            textcoords="offset points",
            xytext=offset,
            ha=ha,
            fontsize=8,
            fontweight="bold" if bold else "normal",
            arrowprops={"arrowstyle": "-", "color": "0.6", "linewidth": 0.5},
        )
    ax.axhline(TARGET_RECALL, color="tab:red", linestyle=":", linewidth=1, label="target recall 0.95")
    ax.set_xscale("log")
    ax.set_xlim(min(p50) / 1.6, max(p95) * 1.3)
    ax.set_xlabel("latency per query, ms (log scale; 1 client)")
    ax.set_ylabel("recall@10 vs exact search")
    ax.set_title(f"Whole-table HNSW search: recall vs latency per hnsw.ef_search\n{src.parent.name} run")
    ax.set_ylim(min(recall) - 0.03, 1.01)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
