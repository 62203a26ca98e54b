"""Plots of a ``benchmarks/compare.py`` results folder: return and parameters vs steps (mean over seeds, min..max
band), units alive per layer over time, final return vs parameters (one point per run). Writes PNGs next to the
CSVs.

    python benchmarks/plots.py benchmarks/results/hopper_100k
"""

import argparse
import csv
import json
from collections import defaultdict
from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # after choosing the headless backend

LABELS = {
    "sac": "SB3 SAC",
    "dense": "dense OFENet-SAC",
    "xinet": "XiNetSAC",
    "small": "small OFENet-SAC",
    "tqc": "sb3-contrib TQC",
    "dense_tqc": "dense OFENet-TQC",
    "xinet_tqc": "XiNetTQC",
    "small_tqc": "small OFENet-TQC",
}


def read_curves(folder: Path) -> dict[tuple[str, str], list[list[dict[str, str]]]]:
    """(env, algo) -> one list of rows per seed, for the finished runs (those in runs.csv)."""
    with (folder / "runs.csv").open(newline="") as handle:
        finished = {(row["env"], row["algo"], row["seed"]) for row in csv.DictReader(handle)}
    curves: dict[tuple[str, str], list[list[dict[str, str]]]] = defaultdict(list)
    for path in sorted((folder / "curves").glob("*.csv")):
        with path.open(newline="") as handle:
            rows = [row for row in csv.DictReader(handle) if row["steps_per_s"]]  # the final row repeats the last step
        if rows and (rows[0]["env"], rows[0]["algo"], rows[0]["seed"]) in finished:
            curves[(rows[0]["env"], rows[0]["algo"])].append(rows)
    return curves


def plot_curves(curves, env: str, key: str, ylabel: str, out: Path) -> None:
    """Mean over seeds (line) and min..max over seeds (band) of one curve column, per configuration."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for (curve_env, algo), runs in sorted(curves.items()):
        if curve_env != env:
            continue
        steps = sorted(set.intersection(*({int(row["step"]) for row in rows} for rows in runs)))
        values = np.array([[float(row[key]) for row in rows if int(row["step"]) in steps] for rows in runs])
        color = f"C{list(LABELS).index(algo)}"
        label = f"{LABELS.get(algo, algo)} ({len(runs)} seed{'s' if len(runs) > 1 else ''})"
        ax.plot(steps, values.mean(axis=0), color=color, label=label)
        if len(runs) > 1:
            ax.fill_between(steps, values.min(axis=0), values.max(axis=0), color=color, alpha=0.2, linewidth=0)
    ax.set(xlabel="env steps", ylabel=ylabel, title=env)
    if key == "params":
        ax.set_yscale("log")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def plot_units(curves, env: str, out: Path) -> None:
    """Units alive per layer of the first XiNetSAC run (else XiNetTQC run), one line per layer."""
    algo = next((algo for algo in ("xinet", "xinet_tqc") if curves.get((env, algo))), None)
    if algo is None:
        return
    runs = curves[(env, algo)]
    rows = runs[0]
    steps = [int(row["step"]) for row in rows]
    units = [json.loads(row["units"]) for row in rows]
    blocks = list(units[0])
    fig, axes = plt.subplots(1, len(blocks), figsize=(3.2 * len(blocks), 3.2), sharey=False)
    for ax, block in zip(axes, blocks, strict=True):
        for layer in range(len(units[0][block])):
            ax.plot(steps, [u[block][layer] for u in units], label=f"layer {layer}")
        ax.set(title=block, xlabel="env steps", ylabel="units alive")
    axes[0].legend(fontsize=7)
    fig.suptitle(f"{env}: {LABELS[algo]} units alive per layer (seed {rows[0]['seed']})")
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def plot_final(folder: Path, env: str, out: Path) -> None:
    with (folder / "runs.csv").open(newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if row["env"] == env]
    if not rows:
        return
    fig, ax = plt.subplots(figsize=(6, 4))
    for algo in LABELS:
        runs = [row for row in rows if row["algo"] == algo]
        if runs:
            ax.scatter([int(r["params"]) for r in runs], [float(r["return_mean"]) for r in runs], label=LABELS[algo])
    ax.set(xscale="log", xlabel="parameters (OFENet + actor + critics)", ylabel="final return (10 episodes)", title=env)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path)
    args = parser.parse_args()
    curves = read_curves(args.folder)
    for env in sorted({env for env, _ in curves}):
        stem = args.folder / env
        plot_curves(curves, env, "return_mean", "return (deterministic policy)", Path(f"{stem}_return.png"))
        plot_curves(curves, env, "params", "parameters (OFENet + actor + critics)", Path(f"{stem}_params.png"))
        plot_units(curves, env, Path(f"{stem}_units.png"))
        plot_final(args.folder, env, Path(f"{stem}_final.png"))
        print(f"plots of {env} written to {args.folder}")


if __name__ == "__main__":
    main()
