#!/usr/bin/env python3
"""Plots the time per operation of `cargo bench --bench object` from criterion's saved estimates.

Usage: python3 docs/plot_object.py [target/criterion] [docs/object-ns-per-op.png]
Needs matplotlib. Prints the table it plots (ns per operation, criterion's mean, wall time
divided by all operations of all threads).
"""
import json
import pathlib
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "target/criterion")
out = pathlib.Path(sys.argv[2] if len(sys.argv) > 2 else "docs/object-ns-per-op.png")

CONTENDERS = [
    "millpond",
    "opool",
    "lockfree-linear",
    "lockfree-spinlock",
    "object-pool",
    "sharded-slab",
    "malloc",
]
THREADS = [1, 2, 8]


def ns_per_op(contender, threads):
    estimates = root / "object" / contender / str(threads) / "new" / "estimates.json"
    return json.loads(estimates.read_text())["mean"]["point_estimate"]


table = {c: [ns_per_op(c, t) for t in THREADS] for c in CONTENDERS}
print("| contender | " + " | ".join(f"{t} thread{'s' if t > 1 else ''}" for t in THREADS) + " |")
print("|---|" + "---:|" * len(THREADS))
for contender, row in table.items():
    print(f"| {contender} | " + " | ".join(f"{v:.1f} ns" for v in row) + " |")

fig, ax = plt.subplots(figsize=(9, 4.5))
width = 0.8 / len(CONTENDERS)
for i, (contender, row) in enumerate(table.items()):
    xs = [x + (i - len(CONTENDERS) / 2 + 0.5) * width for x in range(len(THREADS))]
    ax.bar(xs, row, width, label=contender)
ax.set_xticks(range(len(THREADS)))
ax.set_xticklabels([f"{t} thread{'s' if t > 1 else ''}" for t in THREADS])
ax.set_yscale("log")
ax.set_ylabel("ns per get + write + drop (wall / all ops), log scale")
ax.set_title("Object pools: 4 KiB Vec<u8>, cleared on return (lower is better)")
ax.legend(ncol=len(CONTENDERS), fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.08))
ax.grid(axis="y", which="both", alpha=0.3)
fig.tight_layout()
fig.savefig(out, dpi=110)
print(f"wrote {out}")
