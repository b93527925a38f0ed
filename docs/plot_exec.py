#!/usr/bin/env python3
"""Plots `cargo bench --bench exec` from criterion's saved estimates: (a) tasks per second,
(b) and (c) wall time, one panel each, every contender side by side.

Usage: python3 docs/plot_exec.py [target/criterion] [docs/exec-schedulers.png]
Needs matplotlib. Prints the table it plots (criterion's mean per batch).
"""
import json
import pathlib
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "target/criterion")
out = pathlib.Path(sys.argv[2] if len(sys.argv) > 2 else "docs/exec-schedulers.png")

SCENARIOS = [
    ("exec_a_1M_noop_limit64", "(a) 1M no-op tasks, limit 64\nM tasks/s (higher is better)", 1_000_000),
    ("exec_b_100k_cpu_limit64", "(b) 100k CPU tasks, limit 64\nwall ms (lower is better)", None),
    ("exec_c_10k_sleep10ms_limit1000", "(c) 10k × sleep 10 ms, limit 1000\nwall ms (lower is better)", None),
]
CONTENDERS = [
    "millpond shared",
    "millpond rr",
    "millpond rr+steal",
    "millpond least",
    "millpond least+steal",
    "millpond p2c",
    "millpond p2c+steal",
    "millpond shared q=limit",
    "millpond p2c+steal q=limit",
    "tokio::spawn",
    "spawn+semaphore",
    "buffer_unordered",
    "tokio-task-pool",
]


def directory(name):
    # criterion's folder names replace characters that are not file-name safe.
    return name.replace(":", "_").replace("+", "_").replace("=", "_")


def mean_ns(scenario, contender):
    for candidate in (contender, directory(contender)):
        path = root / scenario / candidate / "new" / "estimates.json"
        if path.exists():
            return json.loads(path.read_text())["mean"]["point_estimate"]
    return None


fig, axes = plt.subplots(1, 3, figsize=(15, 5.5))
print("| contender | (a) M tasks/s | (b) wall | (c) wall |")
print("|---|---:|---:|---:|")
rows = {c: [] for c in CONTENDERS}
for axis, (scenario, title, tasks) in zip(axes, SCENARIOS):
    names, values = [], []
    for contender in CONTENDERS:
        ns = mean_ns(scenario, contender)
        if ns is None:
            rows[contender].append("–")
            continue
        value = tasks / (ns / 1e9) / 1e6 if tasks else ns / 1e6
        rows[contender].append(f"{value:.2f}" if tasks else f"{value:.0f} ms")
        names.append(contender)
        values.append(value)
    colors = ["tab:blue" if n.startswith("millpond") else "tab:gray" for n in names]
    axis.barh(names, values, color=colors)
    axis.invert_yaxis()
    axis.set_title(title, fontsize=10)
    axis.grid(axis="x", alpha=0.3)
    axis.tick_params(axis="y", labelsize=8)
for contender, row in rows.items():
    print(f"| {contender} | " + " | ".join(row) + " |")
fig.suptitle("Worker pools on 2 cores: millpond's schedulers (blue) beside the alternatives (grey)")
fig.tight_layout()
fig.savefig(out, dpi=100)
print(f"wrote {out}")
