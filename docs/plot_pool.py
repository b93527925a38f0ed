#!/usr/bin/env python3
"""Plots the checkout throughput of `cargo bench --bench pool` from criterion's saved estimates.

Usage: python3 docs/plot_pool.py [target/criterion] [docs/pool-throughput.png]
Needs matplotlib. Prints the table it plots (checkouts per second, mean of criterion's samples).
"""
import json
import pathlib
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "target/criterion")
out = pathlib.Path(sys.argv[2] if len(sys.argv) > 2 else "docs/pool-throughput.png")

SCENARIOS = [
    ("a_2tasks_pool16_mt", "(a) 2 tasks, pool 16\nmulti-thread"),
    ("b_64tasks_pool4_yield", "(b) 64 tasks, pool 4\nyield while holding"),
    ("c_256tasks_pool2_yield", "(c) 256 tasks, pool 2\nyield while holding"),
    ("d_32tasks_pool8_current_thread", "(d) 32 tasks, pool 8\ncurrent-thread"),
]
POOLS = ["millpond", "millpond + poller", "deadpool", "bb8", "qp", "mobc",
         "semaphore+mutex"]


def throughput(scenario, pool):
    """Checkouts per second, or 0 for a contender the bench recorded as hung (not measured)."""
    # criterion's folder names replace characters that are not file-name safe.
    base = root / f"pool_{scenario}" / pool.replace("+", "_") / "new"
    if not base.exists():
        base = root / f"pool_{scenario}" / pool / "new"
    if not (base / "benchmark.json").exists():
        return 0.0
    bench = json.loads((base / "benchmark.json").read_text())
    estimates = json.loads((base / "estimates.json").read_text())
    elements = bench["throughput"]["Elements"]
    return elements / estimates["mean"]["point_estimate"] * 1e9


rows = {s: {p: throughput(s, p) for p in POOLS} for s, _ in SCENARIOS}
print("| scenario | " + " | ".join(POOLS) + " |")
print("|---|" + "---:|" * len(POOLS))
for scenario, _ in SCENARIOS:
    cells = " | ".join(
        f"{rows[scenario][p] / 1e6:.2f} M/s" if rows[scenario][p] else "hung" for p in POOLS
    )
    print(f"| {scenario} | {cells} |")

fig, axes = plt.subplots(1, len(SCENARIOS), figsize=(16, 4.6))
colors = ["#1f6f8b", "#5a9bb5", "#c0504d", "#9bbb59", "#e3a33b", "#8064a2", "#8c8c8c"]
for axis, (scenario, title) in zip(axes, SCENARIOS):
    values = [rows[scenario][p] / 1e6 for p in POOLS]
    bars = axis.bar(range(len(POOLS)), values, color=colors)
    axis.set_title(title, fontsize=10)
    axis.set_xticks(range(len(POOLS)))
    axis.set_xticklabels(POOLS, rotation=30, ha="right", fontsize=8)
    axis.set_ylabel("million checkouts / s" if axis is axes[0] else "")
    for bar, value in zip(bars, values):
        label = f"{value:.2f}" if value else "hung"
        axis.annotate(label, (bar.get_x() + bar.get_width() / 2, value),
                      ha="center", va="bottom", fontsize=7)
fig.suptitle("Pool checkout throughput (higher is better), 2-core machine", fontsize=11)
fig.tight_layout()
fig.savefig(out, dpi=110)
print(f"wrote {out}")
