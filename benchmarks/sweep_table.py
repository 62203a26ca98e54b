"""The table of a ``benchmarks/compare.py`` sweep: per env and configuration, the final return over seeds, the
parameters, the training speed and the single-observation latency of the final deterministic actor.

Return: mean and standard deviation over seeds of each run's final 10-episode mean (spread over seeds, not over
episodes), and the min and max over seeds. Parameters: OFENet + actor + critics at the end (SAC, TQC: actor +
critics), and their fraction of the dense OFENet model's of the same algorithm (OFENet-SAC, OFENet-TQC).
Steps/s: env steps per second with training, as the sweep measured them (evaluations excluded; runs shared the
machine with the other worker). Latency: each run's final actor, rebuilt
at its final widths (read from its curve), timed at batch 1 on one thread as TorchScript and in ONNX Runtime,
median of ``--rounds`` interleaved rounds of ``--number`` calls; it depends on the shapes only, so the weights
are fresh ones. At the end, per env and algorithm, the targets: XiNet at <= 30% of the dense model's parameters,
with >= 95% of its return, and above small-from-scratch.

    python benchmarks/sweep_table.py benchmarks/results/sweep --rounds 15 --number 300
"""

import argparse
import csv
import json
import os
import platform
import statistics
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime
import torch as th
from plots import LABELS
from sb3_contrib import TQC
from stable_baselines3 import SAC
from tables import write_results
from torch import nn

from sb3_xinet import XiNetSAC, XiNetTQC
from sb3_xinet.blocks import BlockEntry
from sb3_xinet.export import export, latency_us, save_actor

PLAIN = {"sac": SAC, "tqc": TQC}


def model_class(algo: str) -> type:
    """The class a ``compare.py`` configuration trains: SB3's SAC and sb3-contrib's TQC for ``sac`` and ``tqc``,
    XiNetTQC for the other ``_tqc`` ones, XiNetSAC for the rest."""
    if algo in PLAIN:
        return PLAIN[algo]
    return XiNetTQC if algo.endswith("_tqc") else XiNetSAC


class SACDeterministicActor(nn.Module):
    """SB3 SAC's (and sb3-contrib TQC's, the same actor) deterministic action as plain modules: hidden layers, mean
    head, tanh, rescaling to the bounds."""

    def __init__(self, model: SAC | TQC) -> None:
        super().__init__()
        self.latent_pi = model.actor.latent_pi
        self.mu = model.actor.mu
        self.register_buffer("low", th.as_tensor(model.action_space.low, dtype=th.float32))
        self.register_buffer("high", th.as_tensor(model.action_space.high, dtype=th.float32))

    def forward(self, obs: th.Tensor) -> th.Tensor:
        action = th.tanh(self.mu(self.latent_pi(obs)))
        return self.low + 0.5 * (action + 1.0) * (self.high - self.low)


def final_units(sweep: Path, run: dict[str, str]) -> dict[str, list[int]]:
    """Units alive per gated block at the end of a run (its curve's last row)."""
    with (sweep / "curves" / f"{run['env']}_{run['algo']}_{run['seed']}.csv").open(newline="") as handle:
        return json.loads(list(csv.DictReader(handle))[-1]["units"] or "{}")


def architecture_from_units(units: dict[str, list[int]]) -> dict[str, Any]:
    """The ``architecture`` policy keyword of the widths a curve records; a removed DenseNet layer (0 units)
    is left out, the others keep their layer index."""
    ofenet = {}
    for branch in ("state", "state_action"):
        widths = units[f"ofenet.{branch}"]
        ofenet[f"{branch}_units"] = [width for width in widths if width > 0]
        ofenet[f"{branch}_layer_ids"] = [i for i, width in enumerate(widths) if width > 0]
    critics = sorted(name for name in units if BlockEntry.role_of(name) == "critic")
    return dict(ofenet=ofenet, actor=units["actor"], critics=[units[name] for name in critics])


def final_actor(env: str, algo: str, units: dict[str, list[int]], params: str, folder: Path) -> tuple[dict[str, Path], int]:
    """Build a run's deterministic actor at its final widths (checked against the run's final parameter count);
    write it as TorchScript and ONNX; return the paths and the observation size."""
    if algo in PLAIN:
        plain = model_class(algo)("MlpPolicy", env, buffer_size=1, device="cpu")
        obs_dim = plain.observation_space.shape[0]
        return save_actor(SACDeterministicActor(plain).cpu().eval(), obs_dim, folder / "actor"), obs_dim
    gates = "all" if algo.removesuffix("_tqc") == "xinet" else "none"
    policy_kwargs = dict(gates=gates, architecture=architecture_from_units(units))
    model = model_class(algo)("MlpPolicy", env, buffer_size=1, device="cpu", policy_kwargs=policy_kwargs)
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
            scripted = th.jit.load(str(paths["torchscript"]))
            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = 1
            session = onnxruntime.InferenceSession(str(paths["onnx"]), options, providers=["CPUExecutionProvider"])
            obs_np = np.zeros((1, obs_dim), dtype=np.float32)
            obs = th.as_tensor(obs_np)

            def run_scripted(module=scripted, x=obs) -> None:
                with th.no_grad():
                    module(x)

            callables[(key, "torchscript")] = run_scripted
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


def family(algo: str) -> dict[str, str]:
    """The configurations compared with ``algo``: the SAC ones (``sac``, ``dense``, ``xinet``, ``small``) or the
    TQC ones (the same with ``_tqc``; the plain one is ``tqc``)."""
    suffix = "_tqc" if algo.endswith("tqc") else ""
    return dict(plain="tqc" if suffix else "sac", dense=f"dense{suffix}", xinet=f"xinet{suffix}", small=f"small{suffix}")


def summarize(runs: list[dict[str, str]], latency: dict[tuple, dict[str, float]]) -> list[dict[str, Any]]:
    """One row per (env, algo): statistics over seeds; parameters also as a fraction of the dense OFENet model
    of the same algorithm."""
    rows = []
    for env in sorted({run["env"] for run in runs}):
        for algo in LABELS:
            group = [run for run in runs if run["env"] == env and run["algo"] == algo]
            if not group:
                continue
            dense = family(algo)["dense"]
            dense_params = next((int(r["initial_params"]) for r in runs if r["env"] == env and r["algo"] == dense), None)
            returns = [float(run["return_mean"]) for run in group]
            params = statistics.mean(int(run["params"]) for run in group)
            keys = [(run["env"], run["algo"], run["seed"]) for run in group]
            rows.append(
                dict(
                    env=env,
                    algo=algo,
                    label=LABELS[algo],
                    seeds=len(group),
                    steps=int(group[0]["steps"]),
                    return_mean=round(statistics.mean(returns), 1),
                    return_std=round(spread(returns), 1),
                    return_min=round(min(returns), 1),
                    return_max=round(max(returns), 1),
                    params=round(params),
                    params_vs_dense=round(params / dense_params, 3) if dense_params else "",
                    steps_per_s=round(statistics.mean(float(run["steps_per_s"]) for run in group), 1),
                    torchscript_us=round(statistics.median(latency[k]["torchscript"] for k in keys), 1),
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
        for algos in (family("sac"), family("tqc")):
            xinet, dense, small = (by_algo.get(algos[key]) for key in ("xinet", "dense", "small"))
            names = {key: LABELS[algo] for key, algo in algos.items()}
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
                lines.append(f"  and {'above' if above else 'NOT above'} small-from-scratch {names['small']} on the "
                             f"means ({small['return_mean']} +/- {small['return_std']} over {small['seeds']} seeds at "
                             f"{small['params']:,} parameters; {gap(xinet, small)})")  # fmt: skip
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweep", type=Path)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--number", type=int, default=300)
    args = parser.parse_args()
    th.set_num_threads(1)
    with (args.sweep / "runs.csv").open(newline="") as handle:
        runs = list(csv.DictReader(handle))
    latency = measure_latency(args.sweep, runs, args.rounds, args.number)
    rows = summarize(runs, latency)
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, 1 torch thread"
    title = (
        f"Final return over seeds (mean +/- std of the per-run 10-episode means, min..max), parameters, training "
        f"speed and actor latency at batch 1 (median of {args.rounds} interleaved rounds of {args.number} calls; "
        f"{machine})"
    )
    columns = dict(env="env", label="configuration", seeds="seeds", steps="steps", return_mean="return mean")
    columns.update(return_std="return std", return_min="min", return_max="max", params="parameters")
    columns.update(params_vs_dense="vs dense", steps_per_s="steps/s", torchscript_us="TorchScript us")
    columns.update(onnxruntime_us="ONNX Runtime us")
    text = write_results(args.sweep / "table", rows, title, columns)
    text += "\n" + "\n".join(targets(rows)) + "\n"
    (args.sweep / "table.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
