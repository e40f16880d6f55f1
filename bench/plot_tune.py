#!/usr/bin/env python3
"""Plots a jsdpa-tune sweep: TFLOP/s of every candidate tile, one panel per
workload cell (rows: workload and dtype; columns: head dim and causal), the family
default marked (orange), the fastest in green, tiles the float64 check rejected
as red crosses and build or launch errors as grey crosses at zero.

    python3 bench/plot_tune.py SWEEP.csv OUT.png [--title TEXT]

SWEEP.csv is what `jsdpa-tune --csv` writes.
"""
import argparse
import csv
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 (the backend must be chosen first)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("csv")
    parser.add_argument("png")
    parser.add_argument("--title", default="jsdpa-tune: flash tiles, TFLOP/s per cell")
    args = parser.parse_args()

    with open(args.csv, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        sys.exit("plot_tune.py: %s has no candidates" % args.csv)

    lines, configs, cells = [], [], {}
    for r in rows:
        line = (r["workload"], r["dtype"])
        config = (int(r["head_dim"]), r["causal"] == "1")
        if line not in lines:
            lines.append(line)
        if config not in configs:
            configs.append(config)
        cells.setdefault((line, config), []).append(r)

    fig, axes = plt.subplots(len(lines), len(configs), squeeze=False,
                             figsize=(max(4, 3.3 * len(configs)), 2.9 * len(lines)))
    for i, line in enumerate(lines):
        for j, config in enumerate(configs):
            ax = axes[i][j]
            cands = cells.get((line, config), [])
            (w, dtype), (d, causal) = line, config
            bucket = cands[0]["bucket"] if cands else "?"
            ax.set_title("%s (%s) %s d%d %s" % (w, bucket, dtype, d, "causal" if causal else "full"),
                         fontsize=8)
            cands = [c for c in cands if c["status"] != "skipped"]
            if not cands:
                ax.text(0.5, 0.5, "not measured", ha="center", va="center", transform=ax.transAxes)
                ax.set_xticks([])
                continue
            ok = [float(c["tflops"]) if c["status"] == "ok" else 0.0 for c in cands]
            best = max(range(len(cands)), key=lambda k: ok[k])
            colors = []
            for k, c in enumerate(cands):
                if c["default"] == "1":
                    colors.append("tab:orange")
                elif k == best and c["status"] == "ok":
                    colors.append("tab:green")
                else:
                    colors.append("tab:blue")
            x = range(len(cands))
            ax.bar(x, ok, color=colors)
            for k, c in enumerate(cands):
                if c["status"] == "rejected":
                    ax.plot(k, 0, "x", color="red", markersize=8, mew=2)
                elif c["status"] == "error":
                    ax.plot(k, 0, "x", color="grey", markersize=7, mew=2)
                if c["default"] == "1" and c["status"] == "ok":
                    ax.annotate("default", (k, ok[k]), fontsize=6, ha="center", va="bottom")
            ax.set_xticks(list(x))
            ax.set_xticklabels([c["tile"] for c in cands], rotation=90, fontsize=5)
            ax.tick_params(axis="y", labelsize=6)
            if j == 0:
                ax.set_ylabel("TFLOP/s", fontsize=7)
            top = max(ok)
            ax.set_ylim(0, top * 1.15 if top > 0 else 1)
    fig.suptitle(args.title + "\norange: family default, green: fastest, red x: rejected by the "
                 "float64 check, grey x: build/launch error", fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    fig.savefig(args.png, dpi=110)
    print("plot_tune.py: %s (%d candidates, %d cells)" % (args.png, len(rows), len(cells)))


if __name__ == "__main__":
    main()
