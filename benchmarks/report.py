"""The report of a ``benchmarks.compare`` sweep, rebuilt from its committed CSVs: the table and the plots.

Table (``table.md``, ``table.csv``): per env and configuration, the final return over seeds, the parameters, the
training speed and the single-observation latency of the final deterministic actor. Return: mean and standard
deviation over seeds of each run's final 10-episode mean (spread over seeds, not over episodes), and the min and
max over seeds. Parameters: OFENet + actor + critics at the end (SAC, TQC: actor + critics), and their fraction of
the dense OFENet model's of the same algorithm (OFENet-SAC, OFENet-TQC). Steps/s: env steps per second with
training, as the sweep measured them (evaluations excluded; runs shared the machine with the other worker).
Latency: each run's final actor, rebuilt at its final widths (read from its curve), timed at batch 1 on one
thread as a torch.export program and in ONNX Runtime, median of ``--rounds`` interleaved rounds of ``--number`` calls; it
depends on the shapes only, so the weights are fresh ones. At the end, per env and algorithm, the targets: XiNet
at <= 30% of the dense model's parameters, with >= 95% of its return, and above small-from-scratch.

Plots (PNGs next to the CSVs): return and parameters vs steps (mean over seeds, min..max band), units alive per
layer over time, final return vs parameters (one point per run).

    python -m benchmarks.report benchmarks/results/sweep --rounds 15 --number 300
    python -m benchmarks.report benchmarks/results/sweep --plots-only
"""

import argparse
import json
import statistics
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import onnxruntime
import torch as th

from benchmarks.common import (
    CONFIGS,
    architecture_from_units,
    config_name,
    curve_path,
    final_units,
    machine,
    read_rows,
    read_runs,
    related,
    write_results,
)
from sb3_xinet.export import export, latency_us, save_actor
from sb3_xinet.plain_actor import sb3_actor

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def final_actor(env: str, algo: str, units: dict[str, list[int]], params: str, folder: Path) -> tuple[dict[str, Path], int]:
    """Build a run's deterministic actor at its final widths (checked against the run's final parameter count);
    write it as a torch.export program and ONNX; return the paths and the observation size."""
    config = CONFIGS[config_name(algo)]
    if config.role == "plain":
        plain = config.algo_class("MlpPolicy", env, buffer_size=1, device="cpu")
        obs_dim = plain.observation_space.shape[0]
        return save_actor(sb3_actor(plain), obs_dim, folder / "actor"), obs_dim
    gates = "all" if config.role == "xinet" else "none"
    policy_kwargs = dict(gates=gates, architecture=architecture_from_units(units))
    model = config.algo_class("MlpPolicy", env, buffer_size=1, device="cpu", policy_kwargs=policy_kwargs)
    if str(model.pruning_summary().params) != params:
        raise ValueError(f"{env} {algo}: widths {units} rebuild {model.pruning_summary().params} parameters, not {params}")
    return export(model, folder / "actor"), model.observation_space.shape[0]


def measure_latency(sweep: Path, runs: list[dict[str, str]], rounds: int, number: int) -> dict[tuple, dict[str, float]]:
    """(env, algo, seed) -> median latency in microseconds per runtime."""
    callables = {}
    with tempfile.TemporaryDirectory() as tmp:
        for run in runs:
            key = (run["env"], run["algo"], run["seed"])
            folder = Path(tmp, "_".join(key))
            folder.mkdir()
            paths, obs_dim = final_actor(run["env"], run["algo"], final_units(sweep, run), run["params"], folder)
            program = th.export.load(paths["exported_program"]).module()
            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = 1
            session = onnxruntime.InferenceSession(str(paths["onnx"]), options, providers=["CPUExecutionProvider"])
            obs_np = np.zeros((1, obs_dim), dtype=np.float32)
            obs = th.as_tensor(obs_np)

            def run_program(module=program, x=obs) -> None:
                with th.no_grad():
                    module(x)

            callables[(key, "exported_program")] = run_program
            callables[(key, "onnxruntime")] = lambda s=session, x=obs_np: s.run(None, {"observation": x})
        times: dict[tuple, list[float]] = {name: [] for name in callables}
        for _ in range(rounds):
            for name, call in callables.items():
                times[name].append(latency_us(call, rounds=1, number=number))
    latency: dict[tuple, dict[str, float]] = {}
    for (key, runtime), values in times.items():
        latency.setdefault(key, {})[runtime] = float(np.median(values))
    return latency


def spread(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


def summarize(runs: list[dict[str, str]], latency: dict[tuple, dict[str, float]]) -> list[dict[str, Any]]:
    """One row per (env, algo): statistics over seeds; parameters also as a fraction of the dense OFENet model
    of the same algorithm."""
    rows = []
    for env in sorted({run["env"] for run in runs}):
        for algo in CONFIGS:
            group = [run for run in runs if run["env"] == env and run["algo"] == algo]
            if not group:
                continue
            dense = related(algo, "dense")
            dense_params = next((int(r["initial_params"]) for r in runs if r["env"] == env and r["algo"] == dense), None)
            returns = [float(run["return_mean"]) for run in group]
            params = statistics.mean(int(run["params"]) for run in group)
            keys = [(run["env"], run["algo"], run["seed"]) for run in group]
            rows.append(
                dict(
                    env=env,
                    algo=algo,
                    label=CONFIGS[algo].label,
                    seeds=len(group),
                    steps=int(group[0]["steps"]),
                    return_mean=round(statistics.mean(returns), 1),
                    return_std=round(spread(returns), 1),
                    return_min=round(min(returns), 1),
                    return_max=round(max(returns), 1),
                    params=round(params),
                    params_vs_dense=round(params / dense_params, 3) if dense_params else "",
                    steps_per_s=round(statistics.mean(float(run["steps_per_s"]) for run in group), 1),
                    exported_program_us=round(statistics.median(latency[k]["exported_program"] for k in keys), 1),
                    onnxruntime_us=round(statistics.median(latency[k]["onnxruntime"] for k in keys), 1),
                )
            )
    return rows


def gap(a: dict[str, Any], b: dict[str, Any]) -> str:
    """Difference of mean returns ``a - b`` with its standard error (Welch), to show what the seeds can resolve."""
    error = (a["return_std"] ** 2 / a["seeds"] + b["return_std"] ** 2 / b["seeds"]) ** 0.5
    return f"difference {a['return_mean'] - b['return_mean']:+.0f} +/- {error:.0f} (standard error)"


def targets(rows: list[dict[str, Any]]) -> list[str]:
    """The targets (XiNet at <= 30% of the dense model's parameters with >= 95% of its return, above small), per
    env and algorithm (SAC, TQC) with XiNet, dense and small runs."""
    lines = []
    for env in sorted({row["env"] for row in rows}):
        by_algo = {row["algo"]: row for row in rows if row["env"] == env}
        for family in ("xinet_sac", "xinet_tqc"):
            algos = {role: related(family, role) for role in ("xinet", "dense", "small")}
            xinet, dense, small = (by_algo.get(algos[role]) for role in ("xinet", "dense", "small"))
            names = {role: CONFIGS[algo].label for role, algo in algos.items()}
            if not (xinet and dense):
                continue
            ratio = xinet["return_mean"] / dense["return_mean"]
            lines.append(f"- {env}: {names['xinet']} keeps {xinet['params_vs_dense']:.1%} of the parameters (target "
                         f"<= 30%: {'met' if xinet['params_vs_dense'] <= 0.3 else 'NOT met'}); its mean return is "
                         f"{ratio:.1%} of {names['dense']}'s (target >= 95%: {'met' if ratio >= 0.95 else 'NOT met'} on "
                         f"the means; {xinet['return_mean']} +/- {xinet['return_std']} over {xinet['seeds']} seeds vs "
                         f"{dense['return_mean']} +/- {dense['return_std']} over {dense['seeds']}; "
                         f"{gap(xinet, dense)})")  # fmt: skip
            if small:
                above = xinet["return_mean"] > small["return_mean"]
                lines.append(f"  and {'above' if above else 'NOT above'} {names['small']} (from scratch) on the "
                             f"means ({small['return_mean']} +/- {small['return_std']} over {small['seeds']} seeds at "
                             f"{small['params']:,} parameters; {gap(xinet, small)})")  # fmt: skip
    return lines


def read_curves(folder: Path) -> dict[tuple[str, str], list[list[dict[str, str]]]]:
    """(env, algo) -> one list of rows per seed, for the finished runs (those in runs.csv)."""
    curves: dict[tuple[str, str], list[list[dict[str, str]]]] = defaultdict(list)
    for run in read_runs(folder):
        rows = [row for row in read_rows(curve_path(folder, run)) if row["steps_per_s"]]  # the final row repeats the last
        curves[(run["env"], run["algo"])].append(rows)
    return curves


def plot_curves(curves, env: str, key: str, ylabel: str, out: Path) -> None:
    """Mean over seeds (line) and min..max over seeds (band) of one curve column, per configuration."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for (curve_env, algo), runs in sorted(curves.items()):
        if curve_env != env:
            continue
        steps = sorted(set.intersection(*({int(row["step"]) for row in rows} for rows in runs)))
        values = np.array([[float(row[key]) for row in rows if int(row["step"]) in steps] for rows in runs])
        color = f"C{list(CONFIGS).index(algo)}"
        label = f"{CONFIGS[algo].label} ({len(runs)} seed{'s' if len(runs) > 1 else ''})"
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
    algo = next((algo for algo in ("xinet_sac", "xinet_tqc") if curves.get((env, algo))), None)
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
    fig.suptitle(f"{env}: {CONFIGS[algo].label} units alive per layer (seed {rows[0]['seed']})")
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def plot_final(folder: Path, env: str, out: Path) -> None:
    rows = [row for row in read_runs(folder) if row["env"] == env]
    if not rows:
        return
    fig, ax = plt.subplots(figsize=(6, 4))
    for algo, config in CONFIGS.items():
        runs = [row for row in rows if row["algo"] == algo]
        if runs:
            ax.scatter([int(r["params"]) for r in runs], [float(r["return_mean"]) for r in runs], label=config.label)
    ax.set(xscale="log", xlabel="parameters (OFENet + actor + critics)", ylabel="final return (10 episodes)", title=env)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def write_table(sweep: Path, rounds: int, number: int) -> str:
    """Write the table and the targets (``table.md``, ``table.csv``); return the Markdown."""
    th.set_num_threads(1)
    runs = read_runs(sweep)
    rows = summarize(runs, measure_latency(sweep, runs, rounds, number))
    title = (
        f"Final return over seeds (mean +/- std of the per-run 10-episode means, min..max), parameters, training "
        f"speed and actor latency at batch 1 (median of {rounds} interleaved rounds of {number} calls; {machine(1)})"
    )
    columns = dict(env="env", label="configuration", seeds="seeds", steps="steps", return_mean="return mean")
    columns.update(return_std="return std", return_min="min", return_max="max", params="parameters")
    columns.update(params_vs_dense="vs dense", steps_per_s="steps/s", exported_program_us="torch.export us")
    columns.update(onnxruntime_us="ONNX Runtime us")
    text = write_results(sweep / "table", rows, title, columns)
    text += "\n" + "\n".join(targets(rows)) + "\n"
    (sweep / "table.md").write_text(text)
    return text


def write_plots(folder: Path) -> None:
    """The plots of every env of the sweep, as PNGs next to its CSVs."""
    curves = read_curves(folder)
    for env in sorted({env for env, _ in curves}):
        stem = folder / env
        plot_curves(curves, env, "return_mean", "return (deterministic policy)", Path(f"{stem}_return.png"))
        plot_curves(curves, env, "params", "parameters (OFENet + actor + critics)", Path(f"{stem}_params.png"))
        plot_units(curves, env, Path(f"{stem}_units.png"))
        plot_final(folder, env, Path(f"{stem}_final.png"))
        print(f"plots of {env} written to {folder}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweep", type=Path)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--number", type=int, default=300)
    parser.add_argument("--plots-only", action="store_true", help="the plots, without the table (no timing)")
    args = parser.parse_args()
    if not args.plots_only:
        print(write_table(args.sweep, args.rounds, args.number))
    write_plots(args.sweep)


if __name__ == "__main__":
    main()
