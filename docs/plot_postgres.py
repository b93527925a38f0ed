#!/usr/bin/env python3
"""Plots `cargo bench --bench postgres --features postgres` from criterion's saved estimates:
queries per second of 64 tasks running a prepared `SELECT 1`, pools of 8 and 16 connections.

Usage: python3 docs/plot_postgres.py [target/criterion] [docs/postgres-queries.png]
Needs matplotlib. Prints the table it plots (criterion's mean time per query, inverted).
"""
import json
import pathlib
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "target/criterion")
out = pathlib.Path(sys.argv[2] if len(sys.argv) > 2 else "docs/postgres-queries.png")

SIZES = [8, 16]
CONTENDERS = [
    "millpond",
    "millpond multiplexed",
    "deadpool-postgres",
    "bb8-postgres",
    "no pool (shared clients)",
]

# millpond in blue, its peers in grey, the no-pool ceiling hatched.
STYLE = {
    "millpond": ("tab:blue", None),
    "millpond multiplexed": ("tab:cyan", None),
    "deadpool-postgres": ("dimgray", None),
    "bb8-postgres": ("darkgray", None),
    "no pool (shared clients)": ("whitesmoke", "//"),
}


def queries_per_sec(size, contender):
    group = root / f"pg_select1_64_tasks_pool_{size}"
    for candidate in (contender, contender.replace("(", "_").replace(")", "_")):
        path = group / candidate / "new" / "estimates.json"
        if path.exists():
            mean_ns = json.loads(path.read_text())["mean"]["point_estimate"]
            return 1e9 / mean_ns
    return None


fig, axis = plt.subplots(figsize=(9, 4.5))
width = 0.8 / len(CONTENDERS)
print("| contender | " + " | ".join(f"pool {s}: queries/s" for s in SIZES) + " |")
print("|---|" + "---:|" * len(SIZES))
for index, contender in enumerate(CONTENDERS):
    values = [queries_per_sec(size, contender) for size in SIZES]
    print(f"| {contender} | " + " | ".join(f"{v / 1e3:.1f} k" if v else "–" for v in values) + " |")
    color, hatch = STYLE[contender]
    positions = [i + index * width for i in range(len(SIZES))]
    bars = axis.bar(positions, [v / 1e3 if v else 0 for v in values], width, label=contender, color=color,
                    hatch=hatch, edgecolor="black", linewidth=0.4)
    axis.bar_label(bars, fmt="%.0f", fontsize=7)
axis.set_xticks([i + 0.4 - width / 2 for i in range(len(SIZES))])
axis.set_xticklabels([f"pool of {s} connections" for s in SIZES])
axis.set_ylabel("thousand queries/s (higher is better)")
axis.set_title("64 tasks running a prepared SELECT 1 on 2 cores (server included)", fontsize=10)
axis.legend(fontsize=8, loc="upper right")
axis.grid(axis="y", alpha=0.3)
fig.tight_layout()
fig.savefig(out, dpi=100)
print(f"wrote {out}")
