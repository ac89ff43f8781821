#!/usr/bin/env python3
"""Plot whole-table search recall@10 against p50 latency per hnsw.ef_search.

Reads one or more CSVs that `mockinterview-bench` writes
(recall_latency.csv, one per run) and writes one PNG with a curve per run,
the library's ef_search (the `library` column: "policy" for the value
`tuning::ef_search_for` gives that table size; older CSVs without the
column mark ef_search 100) in bold, and the 0.95 recall target.

    pip install matplotlib
    python3 bench/plot.py bench/results/quick/recall_latency.csv [more.csv ...] [-o out.png]

Without -o the PNG goes next to the first CSV. Each curve is labelled with
its CSV's directory name.
"""

import csv
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

OLD_DEFAULT_EF = 100
TARGET_RECALL = 0.95
COLORS = ["tab:blue", "tab:orange", "tab:green", "tab:purple"]


def parse_args(argv: list[str]) -> tuple[list[Path], Path]:
    srcs: list[Path] = []
    out = None
    it = iter(argv)
    for a in it:
        if a == "-o":
            out = Path(next(it))
        elif a.endswith(".png") and srcs and out is None:
            out = Path(a)  # the old form: plot.py in.csv out.png
        else:
            srcs.append(Path(a))
    if not srcs:
        sys.exit(__doc__)
    return srcs, out or srcs[0].with_suffix(".png")


def main() -> None:
    srcs, out = parse_args(sys.argv[1:])
    fig, ax = plt.subplots(figsize=(8.5, 5.4), dpi=130)
    all_recall: list[float] = []
    all_x: list[float] = []
    for n, src in enumerate(srcs):
        rows = list(csv.DictReader(src.open()))
        color = COLORS[n % len(COLORS)]
        ef = [int(r["ef_search"]) for r in rows]
        recall = [float(r["recall_at_10"]) for r in rows]
        p50 = [float(r["p50_ms"]) for r in rows]
        plans = [r.get("plan", "") for r in rows]
        lib = [
            (r.get("library") == "policy") if "library" in r else int(r["ef_search"]) == OLD_DEFAULT_EF
            for r in rows
        ]
        all_recall += recall
        all_x += p50
        ax.plot(p50, recall, "o-", color=color, label=f"{src.parent.name}: p50 latency")
        for i, (e, x, y, plan, is_lib) in enumerate(zip(ef, p50, recall, plans, lib)):
            label = f"ef={e}" + (" (library)" if is_lib else "")
            offset, ha = ((8, -14), "left") if (i + n) % 2 == 0 else ((-12, 6), "right")
            if plan and "HNSW" not in plan:
                label += f"\nplanner: {plan}"
                offset, ha = (-10, -30), "right"
            if is_lib:
                ax.plot([x], [y], "*", color=color, markersize=14)
            ax.annotate(
                label,
                (x, y),
                textcoords="offset points",
                xytext=offset,
                ha=ha,
                fontsize=7,
                color=color,
                fontweight="bold" if is_lib else "normal",
                arrowprops={"arrowstyle": "-", "color": "0.7", "linewidth": 0.5},
            )
    ax.axhline(TARGET_RECALL, color="tab:red", linestyle=":", linewidth=1, label="target recall 0.95")
    ax.set_xscale("log")
    ax.set_xlim(min(all_x) / 1.6, max(all_x) * 1.6)
    ax.set_xlabel("p50 latency per query, ms (log scale; 1 client, library over TLS)")
    ax.set_ylabel("recall@10 vs exact search")
    ax.set_title("Whole-table HNSW search: recall vs latency per hnsw.ef_search")
    ax.set_ylim(min(all_recall) - 0.03, 1.01)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
