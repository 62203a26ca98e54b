"""Train and evaluate configurations side by side (SB3 SAC, dense OFENet-SAC, XiNetSAC, small-from-scratch OFENet-SAC
and their TQC counterparts: :data:`benchmarks.common.CONFIGS`, named as the RL Zoo keys).

Every run is one (env, algo, seed) at a budget of ``--steps`` env steps. During training it is evaluated every
``--eval-freq`` steps with the deterministic policy (``--eval-episodes`` episodes) and one row is appended to
``<out>/curves/<env>_<algo>_<seed>.csv``: return, parameters (OFENet + actor + critics), units alive per layer, env steps per
second since the previous evaluation (evaluation excluded). The final evaluation (``--final-episodes``
episodes) appends one row to ``<out>/runs.csv``. Both files are written as soon as each row is known; the final
model is kept as ``<out>/<env>_<algo>_<seed>.zip``.

Resumable: a finished run (a row in runs.csv) is skipped; an unfinished one restarts from its last checkpoint
(model and replay buffer, saved at every evaluation under ``<out>/checkpoints/``, not committed), and
continues with ``reset_num_timesteps=False``; curve rows past the checkpoint are dropped first.
Runs go to ``--workers`` processes, each limited to ``--threads`` torch threads; a run already running in another
process (a lock file under ``<out>/checkpoints/``) is skipped. ``--max-hours`` plans a slice:
after that time every run stops at its next checkpoint, no queued run starts, and the same command later resumes
the sweep.

    python -m benchmarks.compare --envs Hopper-v5 --algos xinet_sac ofenet_sac --seeds 0 --steps 100000 \\
        --out benchmarks/results/hopper_100k

``small_ofenet_sac`` (OFENet-SAC built at smaller widths, gates and pruning off; ``small_ofenet_tqc`` likewise)
takes its widths from ``--small-widths``: ``"ofenet_units,actor_units,critic_units"`` per layer, e.g.
``"12,64,64"`` (6 OFENet layers per branch, 2 hidden layers in the heads), or ``auto`` (the default): sized network
by network to the mean final parameters of the env's XiNet runs (:func:`benchmarks.common.match_xinet`). Those
runs go first; an env's small runs start once every XiNet seed of it has finished, and the widths chosen are
written to ``<out>/small_widths.json``. ``--print-small-widths`` only prints them.
"""

import argparse
import csv
import fcntl
import json
import multiprocessing
import os
import shutil
import subprocess
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import gymnasium as gym
import torch as th
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.monitor import Monitor

from benchmarks.common import (
    CONFIGS,
    config_kwargs,
    machine,
    match_xinet,
    network_size,
    ofenet_layers,
    parse_widths,
    read_rows,
    read_runs,
)

RUN_FIELDS = [
    "env",
    "algo",
    "seed",
    "steps",
    "cost_weight",
    "return_mean",
    "return_std",
    "params",
    "initial_params",
    "params_fraction",
    "steps_per_s",
    "wall_s",
    "machine",
    "ofenet_layers",
    "pruning_end",
    "commit",
]
CURVE_FIELDS = ["env", "algo", "seed", "step", "return_mean", "return_std", "params", "steps_per_s", "units"]


def append_row(path: Path, fields: list[str], row: dict[str, Any]) -> None:
    """Append a row; a file written by an earlier version keeps its own columns."""
    new = not path.exists()
    if not new:
        with path.open(newline="") as handle:
            fields = next(csv.reader(handle), fields)
    with path.open("a", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields, extrasaction="ignore")
        if new:
            writer.writeheader()
        writer.writerow(row)
        handle.flush()
        os.fsync(handle.fileno())


def finished_runs(out: Path) -> set[tuple[str, str, str]]:
    """(env, algo, seed) of every run with a row in ``<out>/runs.csv``."""
    return {(row["env"], row["algo"], row["seed"]) for row in read_runs(out)}


def code_version() -> str:
    """The commit the run's code is at (with ``+changes`` when the working tree differs from it)."""
    root = Path(__file__).resolve().parents[1]
    commit = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=root, capture_output=True, text=True).stdout
    changed = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"], cwd=root, capture_output=True, text=True
    )
    return commit.strip() + ("+changes" if changed.stdout.strip() else "")


def slice_over(args: argparse.Namespace) -> bool:
    """Whether the slice planned by ``--max-hours`` has run out (never without one)."""
    return args.deadline is not None and time.time() >= args.deadline


def run_id(env: str, algo: str, seed: int) -> str:
    return f"{env}_{algo}_{seed}"


def train_one(env_id: str, algo: str, seed: int, args: argparse.Namespace) -> str:
    """Train (or resume) one run; append its curve rows and final row."""
    th.set_num_threads(args.threads)
    out = Path(args.out)
    name = run_id(env_id, algo, seed)
    if slice_over(args):  # a queued run: starting it now would only reach its first checkpoint, past the slice
        return f"{name}: not started (the slice is over), resumable"
    checkpoint = out / "checkpoints" / name
    # one process per run, even across sweep commands started side by side: two would share the checkpoint and
    # the curve. The lock goes with the process (flock), so a killed run leaves none behind.
    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    lock = (checkpoint.parent / f"{name}.lock").open("w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return f"{name}: running in another process, skipped"
    if (env_id, algo, str(seed)) in finished_runs(out):
        return f"{name}: finished by another process"
    # the commit of the code the run trains with, read when it starts (edits made while it trains do not count)
    version = code_version()
    curve = out / "curves" / f"{name}.csv"
    curve.parent.mkdir(parents=True, exist_ok=True)
    algo_class = CONFIGS[algo].algo_class
    shared = dict(learning_starts=args.learning_starts, ofenet_pretrain_steps=args.ofenet_pretrain_steps)
    widths = parse_widths(args.small_widths) if CONFIGS[algo].role == "small" else None
    kwargs = config_kwargs(algo, dict(shared, cost_weight=args.cost_weight), widths)
    if CONFIGS[algo].role == "xinet" and args.pruning_end is not None:
        kwargs["pruning_end"] = args.pruning_end
    eval_env = Monitor(gym.make(env_id))
    eval_env.reset(seed=10_000 + seed)

    if (checkpoint / "model.zip").exists():
        started = json.loads((checkpoint / "state.json").read_text()).get("commit", version)
        if started != version:
            return f"{name}: started at {started}, the code is at {version}: resume it there, or delete {checkpoint}"
        model = algo_class.load(checkpoint / "model.zip", env=gym.make(env_id), device="cpu")
        model.load_replay_buffer(checkpoint / "replay_buffer.pkl")
        done = model.num_timesteps
        keep = [row for row in read_rows(curve) if int(row["step"]) <= done]
        curve.unlink(missing_ok=True)
        for row in keep:
            append_row(curve, CURVE_FIELDS, row)
        wall = float(json.loads((checkpoint / "state.json").read_text())["wall_s"])
    else:
        # a run without a checkpoint starts over: rows of an earlier, lost attempt go
        curve.unlink(missing_ok=True)
        model = algo_class("MlpPolicy", env_id, seed=seed, device="cpu", **kwargs)
        done, wall = 0, 0.0

    class Evaluate(BaseCallback):
        """Evaluate, append a curve row and checkpoint every ``eval_freq`` steps (training time only counted)."""

        def __init__(self) -> None:
            super().__init__()
            self.last_step, self.last_time, self.wall = done, time.perf_counter(), wall

        def _on_step(self) -> bool:
            if self.num_timesteps - self.last_step >= args.eval_freq:
                self.evaluate(args.eval_episodes)
                return not slice_over(args)  # past the slice: stop, resume later
            return True

        def evaluate(self, episodes: int) -> dict[str, Any]:
            elapsed = time.perf_counter() - self.last_time
            self.wall += elapsed
            new_steps = self.num_timesteps - self.last_step
            steps_per_s = round(new_steps / elapsed, 2) if new_steps else ""
            returns, _ = evaluate_policy(self.model, eval_env, n_eval_episodes=episodes, return_episode_rewards=True)
            params, units = network_size(self.model)
            row = dict(
                env=env_id,
                algo=algo,
                seed=seed,
                step=self.num_timesteps,
                return_mean=float(sum(returns) / len(returns)),
                return_std=float(th.tensor(returns, dtype=th.float64).std(unbiased=False)),
                params=params,
                steps_per_s=steps_per_s,
                units=json.dumps(units),
            )
            append_row(curve, CURVE_FIELDS, row)
            checkpoint.mkdir(parents=True, exist_ok=True)
            self.model.save(checkpoint / "model.zip")
            self.model.save_replay_buffer(checkpoint / "replay_buffer.pkl")
            (checkpoint / "state.json").write_text(json.dumps({"wall_s": self.wall, "commit": version}))
            self.last_step, self.last_time = self.num_timesteps, time.perf_counter()
            return row

    callback = Evaluate()
    remaining = args.steps - done
    if remaining > 0:
        model.learn(remaining, callback=callback, reset_num_timesteps=done == 0)
    if model.num_timesteps < args.steps:
        return f"{name}: paused at step {model.num_timesteps} (end of the slice), resumable"
    final = callback.evaluate(args.final_episodes)
    shutil.copyfile(checkpoint / "model.zip", out / f"{name}.zip")
    params, _ = network_size(model)
    initial = sum(model.initial_params.values()) if CONFIGS[algo].role != "plain" else params
    append_row(
        out / "runs.csv",
        RUN_FIELDS,
        dict(
            env=env_id,
            algo=algo,
            seed=seed,
            steps=args.steps,
            cost_weight=kwargs.get("cost_weight", ""),
            return_mean=final["return_mean"],
            return_std=final["return_std"],
            params=params,
            initial_params=initial,
            params_fraction=round(params / initial, 4),
            steps_per_s=round(model.num_timesteps / callback.wall, 2),
            wall_s=round(callback.wall, 1),
            machine=f"{machine(args.threads)} per run",
            ofenet_layers=ofenet_layers(model),
            pruning_end=model.pruning_schedule.end if CONFIGS[algo].role == "xinet" else "",
            commit=version,
        ),
    )
    return f"{name}: return {final['return_mean']:.1f}, {params:,} parameters"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line, with the slice's ``deadline`` (a time.time() value, or None) computed from ``--max-hours``."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--envs", nargs="+", default=["Hopper-v5"])
    parser.add_argument("--algos", nargs="+", default=["sac", "ofenet_sac", "xinet_sac"], choices=list(CONFIGS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--learning-starts", type=int, default=10_000)
    parser.add_argument("--ofenet-pretrain-steps", type=int, default=10_000)
    parser.add_argument("--cost-weight", type=float, default=1.0)
    parser.add_argument(
        "--pruning-end",
        type=int,
        default=None,
        help="env step at which the XiNet runs fold their gates (default: the package's)",
    )
    parser.add_argument("--small-widths", default="auto", help='"ofenet,actor,critic" widths, or auto')
    parser.add_argument("--eval-freq", type=int, default=10_000)
    parser.add_argument("--eval-episodes", type=int, default=5)
    parser.add_argument("--final-episodes", type=int, default=10)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="benchmarks/results/compare")
    parser.add_argument("--max-hours", type=float, default=None, help="stop (at a checkpoint) after this long")
    parser.add_argument("--print-small-widths", action="store_true", help="print the small models' auto widths, train nothing")
    args = parser.parse_args(argv)
    args.deadline = time.time() + 3600 * args.max_hours if args.max_hours else None
    return args


def main() -> None:
    args = parse_args()
    if args.print_small_widths:
        print_small_widths(args)
        return

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    finished = finished_runs(out)
    todo = [
        (env, algo, seed)
        for seed in args.seeds
        for env in args.envs
        for algo in args.algos
        if (env, algo, str(seed)) not in finished
    ]
    print(f"{len(todo)} runs to do, {len(finished)} finished in {out}")
    auto = args.small_widths == "auto"
    small = [run for run in todo if CONFIGS[run[1]].role == "small"]
    run_all([(run, args) for run in todo if not (auto and run in small)], args.workers)
    if auto:
        run_all(small_runs_sized_to_xinet(small, args), args.workers)


def print_small_widths(args: argparse.Namespace) -> None:
    """The auto widths of the small configurations of ``--algos`` on each of ``--envs`` (their XiNet runs done)."""
    for env in args.envs:
        for small in [algo for algo in args.algos if CONFIGS[algo].role == "small"]:
            xinet = small.replace("small_ofenet", "xinet")
            widths, target, counts = match_xinet(Path(args.out), env, xinet)
            print(f"{xinet} final parameters on {env}, mean over its finished seeds:")
            for name, value in target.items():
                print(f"  {name}: {value:,.0f} ({small}: {counts[name]:,})")
            print(f"  total: {sum(target.values()):,.0f} ({small}: {sum(counts.values()):,})")
            print(f'--small-widths "{",".join(map(str, widths))}"')


def small_runs_sized_to_xinet(todo: list[tuple[str, str, int]], args: argparse.Namespace) -> list[tuple]:
    """The small runs whose env has every seed of the matching XiNet runs finished, each with the widths that match
    those runs."""
    out = Path(args.out)
    finished = finished_runs(out)
    chosen = json.loads((out / "small_widths.json").read_text()) if (out / "small_widths.json").exists() else {}
    ready = []
    for env, small in dict.fromkeys((env, algo) for env, algo, _ in todo):
        xinet = small.replace("small_ofenet", "xinet")
        key = f"{env} {small}"
        xinet_seeds = {seed for run_env, algo, seed in finished if run_env == env and algo == xinet}
        if not {str(seed) for seed in args.seeds} <= xinet_seeds:
            print(f"{env}: {small} runs wait until {xinet} seeds {args.seeds} have finished", flush=True)
            continue
        if key not in chosen:
            chosen[key] = ",".join(map(str, match_xinet(out, env, xinet)[0]))
            (out / "small_widths.json").write_text(json.dumps(chosen, indent=1) + "\n")
        print(f"{env}: {small} widths {chosen[key]} (ofenet, actor, critic)", flush=True)
        env_args = argparse.Namespace(**{**vars(args), "small_widths": chosen[key]})
        ready.extend((run, env_args) for run in todo if run[:2] == (env, small))
    return ready


def run_all(runs: list[tuple[tuple[str, str, int], argparse.Namespace]], workers: int) -> None:
    """Train the runs in ``workers`` processes, printing one line per run as it ends."""
    if not runs:
        return
    # one fresh process per run (spawn): MuJoCo and torch thread settings do not leak between runs
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"), max_tasks_per_child=1) as pool:
        for message in pool.map(train_one, *zip(*[(*run, run_args) for run, run_args in runs], strict=True)):
            print(message, flush=True)


if __name__ == "__main__":
    main()
