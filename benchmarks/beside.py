"""Runs of several sweeps side by side (e.g. one configuration under two versions of the code), rebuilt from their
committed CSVs: one table row per run and one plot of return against env steps.

Each ``--runs`` entry is ``FOLDER:ALGO:LABEL``, a ``benchmarks.compare`` sweep folder, a configuration in it (its
RL Zoo key or the alias its runs.csv uses) and the label it gets here. Per run: the commit it ran at, its return
at each evaluation, its score (the mean of its evaluations in the last 20% of its steps, as benchmarks/evidence.py
scores a run), its return at the end (10 episodes), its parameters, the units it keeps per network (relative to
its first evaluation's, i.e. its unpruned widths) and its widths at the end, and its env steps per second over the
run (evaluations excluded). The plot: per label, the mean over seeds and the min..max band.

    python -m benchmarks.beside --env Hopper-v5 --out benchmarks/results/tqc_scales \\
        --runs "benchmarks/results/tqc_100k:xinet_tqc:loss level" "benchmarks/results/tqc_grad_100k:xinet_tqc:gradient"
"""

import argparse
import json
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np

from benchmarks.common import config_name, curve_path, read_rows, read_runs, tail_score, write_results

matplotlib.use("Agg")
import matplotlib.pyplot as plt

NETWORKS = ("ofenet", "actor", "critic")  # the networks whose kept units are reported, by block-name prefix


def kept(first: dict[str, list[int]], last: dict[str, list[int]], prefix: str) -> str:
    """Units alive at the end over units at the first evaluation, summed over the blocks named ``prefix*``."""
    blocks = [name for name in first if name.startswith(prefix)]
    if not blocks:
        return ""
    return f"{sum(sum(last.get(name, [])) for name in blocks) / sum(sum(first[name]) for name in blocks):.1%}"


def widths(units: dict[str, list[int]]) -> str:
    return "; ".join(f"{name} {' '.join(map(str, layers))}" for name, layers in units.items())


def run_rows(folder: Path, algo: str, label: str, env: str) -> tuple[list[dict[str, Any]], list[list[dict[str, str]]]]:
    """One table row per finished run of ``algo`` on ``env`` in ``folder``, and the runs' curves."""
    rows, curves = [], []
    for run in read_runs(folder):
        if run["env"] != env or run["algo"] != config_name(algo):
            continue
        curve = [row for row in read_rows(curve_path(folder, run)) if row["steps_per_s"]]
        curves.append(curve)
        first, last = json.loads(curve[0]["units"] or "{}"), json.loads(curve[-1]["units"] or "{}")
        row = dict(label=label, seed=int(run["seed"]), commit=run.get("commit") or "not recorded")
        row["returns"] = ", ".join(f"{float(point['return_mean']):.0f}" for point in curve)
        row.update(
            score=round(tail_score(curve, int(run["steps"])), 1),
            final=round(float(run["return_mean"]), 1),
            params=f"{int(run['params']):,} ({float(run['params_fraction']):.1%})",
        )
        row.update({network: kept(first, last, network) for network in NETWORKS})
        row.update(widths=widths(last), steps_per_s=run["steps_per_s"])
        rows.append(row)
    return sorted(rows, key=lambda row: row["seed"]), curves


def plot(curves: dict[str, list[list[dict[str, str]]]], env: str, out: Path) -> None:
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for index, (label, runs) in enumerate(curves.items()):
        if not runs:
            continue
        steps = sorted(set.intersection(*({int(row["step"]) for row in rows} for rows in runs)))
        values = np.array([[float(row["return_mean"]) for row in rows if int(row["step"]) in steps] for rows in runs])
        ax.plot(steps, values.mean(axis=0), color=f"C{index}", label=f"{label} ({len(runs)} seed{'s' * (len(runs) > 1)})")
        if len(runs) > 1:
            ax.fill_between(steps, values.min(axis=0), values.max(axis=0), color=f"C{index}", alpha=0.15, linewidth=0)
    ax.set(xlabel="env steps", ylabel="return (deterministic policy)", title=env)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="Hopper-v5")
    parser.add_argument("--runs", nargs="+", required=True, help="FOLDER:ALGO:LABEL entries")
    parser.add_argument("--out", required=True, help="path of the table (.md, .csv) and the plot (_return.png), no suffix")
    args = parser.parse_args()
    table, curves = [], {}
    for entry in args.runs:
        folder, algo, label = entry.split(":", 2)
        rows, curves[label] = run_rows(Path(folder), algo, label, args.env)
        table.extend(rows)
    columns = dict(label="runs", seed="seed", commit="commit", returns="return at each evaluation")
    columns.update(score="score (last 20%)", final="final")
    columns.update(params="parameters (of its start)", ofenet="OFENet units kept", actor="actor units kept")
    columns.update(critic="critics' units kept", widths="widths at the end", steps_per_s="steps/s")
    title = f"{args.env}: runs side by side ({', '.join(entry.split(':', 2)[2] for entry in args.runs)})"
    print(write_results(args.out, table, title, columns))
    plot(curves, args.env, Path(f"{args.out}_return.png"))


if __name__ == "__main__":
    main()
