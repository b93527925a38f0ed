#!/usr/bin/env python3
"""Plots `benches/limits.rs` over time: the limit each contender holds and the goodput it gets,
against the simulated backend's capacity (100, then 50, then 100).

Usage: LIMITS_CSV=target/limits.csv cargo bench --bench limits
       python3 docs/plot_limits.py [target/limits.csv] [docs/limits-over-time.png]
Needs matplotlib.
"""
import collections
import csv
import pathlib
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

source = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "target/limits.csv")
out = pathlib.Path(sys.argv[2] if len(sys.argv) > 2 else "docs/limits-over-time.png")

SHOWN = [
    "static 50",
    "static 100",
    "AIMD (defaults)",
    "Gradient2 (max 1000)",
    "Gradient2 (max 1000, tolerance 1.1)",
]

series = collections.defaultdict(lambda: ([], []))
with source.open() as file:
    for row in csv.DictReader(file):
        if row["contender"] in SHOWN:
            xs, ys = series[(row["contender"], row["series"])]
            xs.append(float(row["seconds"]))
            ys.append(float(row["value"]))

figure, (limits, goodput) = plt.subplots(2, 1, figsize=(10, 8), sharex=True)
capacity_x = [0, 10, 10, 20, 20, 30]
capacity_y = [100, 100, 50, 50, 100, 100]
limits.plot(capacity_x, capacity_y, "k--", linewidth=1, label="capacity")
goodput.plot(capacity_x, [c * 100 for c in capacity_y], "k--", linewidth=1, label="capacity × 100/s")
for name in SHOWN:
    if (name, "limit") in series:
        limits.plot(*series[(name, "limit")], label=name, linewidth=1)
    if (name, "goodput") in series:
        goodput.plot(*series[(name, "goodput")], label=name, linewidth=1)
limits.set_ylabel("limit (calls in flight)")
limits.set_ylim(0, 260)
limits.legend(fontsize=8, loc="upper right")
goodput.set_ylabel("goodput (calls/s, per 100 ms)")
goodput.set_xlabel("seconds (capacity 100, then 50, then 100)")
goodput.set_ylim(0, 11000)
limits.set_title("Adaptive against static limits on a backend that thrashes past its capacity")
figure.tight_layout()
figure.savefig(out, dpi=100)
print(f"wrote {out}")
