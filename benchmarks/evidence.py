"""The statistics of a ``benchmarks.compare`` sweep, with the tools the field trusts: ``rliable`` (Agarwal et al.,
"Deep Reinforcement Learning at the Edge of the Statistical Precipice", NeurIPS 2021).

Score of a run: the mean return of its periodic evaluations in the last ``--tail`` (20%) of its budget (steps above
80% of ``steps``; the final evaluation of ``--final-episodes`` is kept beside it, not in it): one checkpoint of a
run swings by far more than the spread of its episodes. Scores are normalised per task,
``(score - random) / (reference - random)``: ``random`` is the mean return of uniformly random actions (measured
once per task, kept in ``<sweep>/random_scores.json``) and ``reference`` the mean score of ``--reference``'s runs on
that task (dense OFENet-SAC by default), so 1 is the reference and 0 is random.

Written next to the sweep's CSVs, all rebuilt from them by the same command:

- ``evidence.md``: the commit of the runs (one commit, or the command refuses), runs per task and configuration,
  per task the interquartile mean (IQM) of the raw scores with stratified-bootstrap 95% intervals, the
  aggregate IQM, mean, median and optimality gap of the normalised scores over the tasks, and the probability
  that ``--focus`` improves on each other configuration, each with what its interval says (better, worse, or
  unresolved when it contains 0.5); per task, each configuration's parameters as a share of the reference's,
  training minutes, and training steps/s after the fold (where pruning should pay);
- ``evidence_runs.csv``: every run's score, final return and parameters;
- plots: the aggregate intervals, the probabilities of improvement, the performance profiles, IQM learning
  curves with 95% bands against env steps and against training seconds, parameters and OFENet layers over time.

    pip install -e ".[evidence]"
    python -m benchmarks.evidence benchmarks/results/evidence --algos sac ofenet_sac xinet_sac small_ofenet_sac
"""

import argparse
import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
import matplotlib
import numpy as np
from rliable import library as rly
from rliable import metrics, plot_utils

from benchmarks.common import CONFIGS, curve_path, read_rows, read_runs, tail_score, write_results

matplotlib.use("Agg")
import matplotlib.pyplot as plt

AGGREGATES = ("IQM", "mean", "median", "optimality gap")
# rliable 1.2.0 hands the RandomState it is given (ours: reproducible intervals) to arch 7 as ``random_state``,
# which arch deprecates; nothing of ours to change
warnings.filterwarnings("ignore", message="random_state is deprecated", category=FutureWarning)


@dataclass
class Run:
    """One finished run: its periodic evaluations (step, return, params, steps/s, units) and its final row
    (``wall``: its training seconds; ``pruning_end``: the step of its fold, None where nothing is pruned)."""

    env: str
    algo: str
    seed: int
    steps: int
    final: float
    params: int
    commit: str
    curve: list[dict[str, str]]
    wall: float
    pruning_end: int | None

    def score(self, tail: float) -> float:
        """Mean return of the periodic evaluations after ``(1 - tail) * steps``."""
        try:
            return tail_score(self.curve, self.steps, tail)
        except ValueError as error:
            raise ValueError(f"{self.env} {self.algo} seed {self.seed}: {error}") from None


def load_runs(sweep: Path, algos: list[str], envs: list[str] | None) -> list[Run]:
    """The sweep's finished runs of ``algos`` (on ``envs``, default all), all from one commit."""
    runs = []
    for row in read_runs(sweep):
        if row["algo"] not in algos or (envs and row["env"] not in envs):
            continue
        # the final evaluation repeats the last step without a speed: it is the final row, not a periodic one
        curve = [r for r in read_rows(curve_path(sweep, row)) if r["steps_per_s"]]
        seed, steps, final, params = int(row["seed"]), int(row["steps"]), float(row["return_mean"]), int(row["params"])
        pruning_end = int(row["pruning_end"]) if row.get("pruning_end") else None
        commit, wall = row.get("commit", ""), float(row["wall_s"])
        runs.append(Run(row["env"], row["algo"], seed, steps, final, params, commit, curve, wall, pruning_end))
    commits = sorted({run.commit for run in runs})
    if len(commits) != 1 or not commits[0] or commits[0].endswith("+changes"):
        raise ValueError(f"{sweep}: the runs compared must come from one committed code version; found {commits or 'none'}")
    return runs


def random_scores(sweep: Path, envs: list[str], episodes: int) -> dict[str, float]:
    """Mean return of uniformly random actions per env, measured once (seeded) and kept in the sweep."""
    path = sweep / "random_scores.json"
    scores = json.loads(path.read_text()) if path.exists() else {}
    for env_id in envs:
        if env_id in scores:
            continue
        env = gym.make(env_id)
        env.action_space.seed(0)
        returns = []
        for episode in range(episodes):
            env.reset(seed=episode)
            total, done = 0.0, False
            while not done:
                _, reward, terminated, truncated, _ = env.step(env.action_space.sample())
                total, done = total + float(reward), terminated or truncated
            returns.append(total)
        scores[env_id] = float(np.mean(returns))
        path.write_text(json.dumps(scores, indent=1) + "\n")
    return scores


class Scores:
    """The runs as rliable's arrays: per configuration, (seeds, tasks) scores and (seeds, tasks, evaluations)
    curves, raw and normalised; only the seeds every (task, configuration) has finished."""

    def __init__(self, runs: list[Run], algos: list[str], reference: str, randoms: dict[str, float], tail: float):
        self.envs = sorted({run.env for run in runs})
        self.algos = [algo for algo in algos if any(run.algo == algo for run in runs)]
        by_key = {(run.env, run.algo, run.seed): run for run in runs}
        self.seeds = sorted(
            set.intersection(*({s for e, a, s in by_key if (e, a) == (env, algo)} for env in self.envs for algo in self.algos))
        )
        if not self.seeds:
            raise ValueError("no seed has finished for every task and configuration")
        self.runs = {algo: [[by_key[(env, algo, seed)] for env in self.envs] for seed in self.seeds] for algo in self.algos}
        self.raw = {algo: np.array([[run.score(tail) for run in row] for row in grid]) for algo, grid in self.runs.items()}
        if reference not in self.raw:
            raise ValueError(f"the reference {reference!r} has no runs in this sweep")
        self.low = np.array([randoms[env] for env in self.envs])
        self.high = self.raw[reference].mean(axis=0)
        self.normalised = {algo: self.normalise(scores) for algo, scores in self.raw.items()}
        every = [run for grid in self.runs.values() for row in grid for run in row]
        self.steps = sorted(set.intersection(*({int(r["step"]) for r in run.curve} for run in every)))

    def normalise(self, scores: np.ndarray) -> np.ndarray:
        """Along the task axis (1): 0 is random, 1 the reference's mean score."""
        shape = (1, len(self.envs)) + (1,) * (scores.ndim - 2)
        return (scores - self.low.reshape(shape)) / (self.high - self.low).reshape(shape)

    def curve(self, algo: str, key: str) -> np.ndarray:
        """(seeds, tasks, evaluations) of a curve column at the evaluation steps every run has."""
        return np.array(
            [[[float(r[key]) for r in run.curve if int(r["step"]) in self.steps] for run in row] for row in self.runs[algo]]
        )

    def seconds(self, algo: str) -> np.ndarray:
        """(seeds, tasks, evaluations) training seconds to each evaluation (env steps over measured steps/s)."""
        steps = np.array(self.steps, dtype=float)
        per_step = 1.0 / self.curve(algo, "steps_per_s")
        return np.cumsum(np.diff(steps, prepend=0.0) * per_step, axis=-1)


def aggregate(scores: np.ndarray) -> np.ndarray:
    """The :data:`AGGREGATES` of a (runs, tasks) array of normalised scores."""
    functions = (metrics.aggregate_iqm, metrics.aggregate_mean, metrics.aggregate_median, metrics.aggregate_optimality_gap)
    return np.array([function(scores) for function in functions])


def iqm_per_evaluation(curves: np.ndarray) -> np.ndarray:
    """IQM over runs and tasks at each evaluation of a (runs, tasks, evaluations) array."""
    return np.array([metrics.aggregate_iqm(curves[..., i]) for i in range(curves.shape[-1])])


def interval_estimates(scores: dict, function, reps: int, seed: int) -> tuple[dict, dict]:
    """rliable's point estimates and stratified-bootstrap 95% intervals (``(2, outputs)``: low, high), reproducible
    from ``seed``."""
    point, interval = rly.get_interval_estimates(scores, function, reps=reps, random_state=np.random.RandomState(seed))
    return point, {key: np.asarray(bounds).reshape(2, -1) for key, bounds in interval.items()}


def verdict(low: float, high: float, neutral: float) -> str:
    """What a 95% interval says about a difference from ``neutral``."""
    if low > neutral:
        return "better"
    if high < neutral:
        return "worse"
    return "unresolved"


def improvement_pairs(scores: Scores, focus: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``"focus,other"`` -> the two normalised score arrays, for every other configuration."""
    return {
        f"{focus},{other}": (scores.normalised[focus], scores.normalised[other]) for other in scores.algos if other != focus
    }


def bootstraps(scores: Scores, focus: str, reps: int, seed: int) -> dict[str, tuple[dict, dict]]:
    """The aggregates of the normalised scores and the probabilities of improvement of ``focus`` (point estimates,
    intervals): the tables and the plots both read them, so the costly bootstraps run once."""
    return dict(
        aggregates=interval_estimates(scores.normalised, aggregate, reps, seed),
        improvements=interval_estimates(improvement_pairs(scores, focus), metrics.probability_of_improvement, reps, seed),
    )


def color(algo: str) -> str:
    """A configuration's colour, the same in every plot."""
    return f"C{list(CONFIGS).index(algo)}"


def estimates(scores: Scores, focus: str, reps: int, seed: int, boots: dict[str, tuple[dict, dict]]) -> dict[str, list[dict]]:
    """Per-task IQMs of raw scores (bootstrapped here), aggregates of normalised ones and probabilities of improvement
    of ``focus`` (from ``boots``, :func:`bootstraps`)."""
    tasks = []
    for index, env in enumerate(scores.envs):
        per_task = {algo: raw[:, [index]] for algo, raw in scores.raw.items()}
        point, interval = interval_estimates(per_task, metrics.aggregate_iqm, reps, seed)
        for algo in scores.algos:
            low, high = (round(float(value), 1) for value in interval[algo][:, 0])
            final = float(np.mean([row[index].final for row in scores.runs[algo]]))
            params = int(np.median([row[index].params for row in scores.runs[algo]]))
            label = CONFIGS[algo].label
            iqm = round(float(point[algo]), 1)
            tasks.append(
                dict(
                    env=env,
                    algo=label,
                    seeds=len(scores.seeds),
                    iqm=iqm,
                    low=low,
                    high=high,
                    final_mean=round(final, 1),
                    params=params,
                )
            )
    point, interval = boots["aggregates"]
    aggregates = []
    for algo in scores.algos:
        for i, name in enumerate(AGGREGATES):
            low, high = (round(float(bound[i]), 3) for bound in interval[algo])
            aggregates.append(
                dict(algo=CONFIGS[algo].label, metric=name, value=round(float(point[algo][i]), 3), low=low, high=high)
            )
    point, interval = boots["improvements"]
    improvements = []
    for pair in point:
        low, high = (round(float(value), 3) for value in interval[pair][:, 0])
        other = CONFIGS[pair.split(",")[1]].label
        probability = round(float(point[pair]), 3)
        improvements.append(
            dict(x=CONFIGS[focus].label, y=other, probability=probability, low=low, high=high, says=verdict(low, high, 0.5))
        )
    return dict(tasks=tasks, aggregates=aggregates, improvements=improvements)


def spread(values: list[float], digits: int) -> dict[str, float]:
    """Median, min and max of ``values``, rounded."""
    return dict(median=round(float(np.median(values)), digits), min=round(min(values), digits), max=round(max(values), digits))


def compute(scores: Scores, reference: str) -> list[dict]:
    """Per task and configuration, medians over the seeds (with min and max): parameters as a share of
    ``reference``'s, training minutes, and training steps/s after the fold (the env steps past the latest
    ``pruning_end`` of the task's runs, the same window for every configuration: the phase where pruning should
    pay). The runs ran two at a time, each beside whichever run the sweep paired it with, so these times are not
    side-by-side measurements: ``benchmarks.throughput`` interleaves configurations for that."""
    rows = []
    for index, env in enumerate(scores.envs):
        runs = {algo: [row[index] for row in grid] for algo, grid in scores.runs.items()}
        folds = [run.pruning_end for every in runs.values() for run in every if run.pruning_end]
        fold = max(folds) if folds else 0
        dense = float(np.median([run.params for run in runs[reference]]))
        minutes = {algo: [run.wall / 60 for run in every] for algo, every in runs.items()}
        steps = np.array([0, *scores.steps], dtype=float)
        for algo, every in runs.items():
            seconds = np.pad(scores.seconds(algo)[:, index], ((0, 0), (1, 0)))
            at_fold = np.array([np.interp(fold, steps, row) for row in seconds])
            share = spread([run.params / dense for run in every], 3)
            time = spread(minutes[algo], 1)
            speed = spread(list((steps[-1] - fold) / (seconds[:, -1] - at_fold)), 1)
            ratio = round(float(np.median(minutes[algo]) / np.median(minutes[reference])), 2)
            rows.append(
                dict(
                    env=env,
                    algo=CONFIGS[algo].label,
                    seeds=len(every),
                    params=int(np.median([run.params for run in every])),
                    share=share["median"],
                    share_range=f"{share['min']}..{share['max']}",
                    minutes=time["median"],
                    minutes_range=f"{time['min']}..{time['max']}",
                    minutes_vs_reference=ratio,
                    after=fold,
                    speed_after=speed["median"],
                    speed_after_range=f"{speed['min']}..{speed['max']}",
                )
            )
    return rows


def plot_rliable(scores: Scores, boots: dict[str, tuple[dict, dict]], reps: int, sweep: Path) -> None:
    """rliable's interval, improvement and profile plots, from the normalised scores and their :func:`bootstraps`."""
    labels = {algo: CONFIGS[algo].label for algo in scores.algos}

    def relabel(values: dict) -> dict:
        return {labels[key] if key in labels else ",".join(labels[a] for a in key.split(",")): v for key, v in values.items()}

    colors = {label: color(algo) for algo, label in labels.items()}
    point, interval = boots["aggregates"]
    fig, _ = plot_utils.plot_interval_estimates(
        relabel(point),
        relabel(interval),
        list(AGGREGATES),
        algorithms=list(labels.values()),
        colors=colors,
        xlabel="normalised score",
        xlabel_y_coordinate=-0.5,
    )
    fig.savefig(sweep / "evidence_intervals.png", dpi=120, bbox_inches="tight")
    plt.close(fig)
    point, interval = boots["improvements"]
    ax = plot_utils.plot_probability_of_improvement(relabel(point), relabel(interval), figsize=(5, 1 + 0.5 * len(point)))
    ax.figure.savefig(sweep / "evidence_improvement.png", dpi=120, bbox_inches="tight")
    plt.close(ax.figure)
    everything = np.concatenate([values.ravel() for values in scores.normalised.values()])
    taus = np.linspace(min(0.0, everything.min()), everything.max() * 1.05, 101)
    profiles, bands = rly.create_performance_profile(relabel(scores.normalised), taus, reps=min(reps, 2000))
    fig, ax = plt.subplots(figsize=(6, 4))
    plot_utils.plot_performance_profiles(
        profiles, taus, performance_profile_cis=bands, colors=colors, ax=ax, xlabel="normalised score (tau)"
    )
    handles = [matplotlib.lines.Line2D([], [], color=colors[label], label=label) for label in profiles]
    ax.legend(handles=handles, loc="upper right", fontsize=8)
    fig.savefig(sweep / "evidence_profiles.png", dpi=120, bbox_inches="tight")
    plt.close(fig)


def iqm_band(curves: np.ndarray, reps: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """IQM over runs (and tasks) at each evaluation of (seeds, tasks, evaluations), and its 95% interval."""
    point, interval = interval_estimates({"curve": curves}, iqm_per_evaluation, reps, seed)
    return point["curve"], interval["curve"]


def plot_curves(scores: Scores, reps: int, seed: int, sweep: Path) -> None:
    """IQM learning curves with 95% bands per task (raw returns) and over tasks (normalised), against env steps and
    against training seconds; parameters and OFENet layers over time (median over seeds, min..max band)."""
    n = len(scores.envs)
    for x_axis in ("steps", "seconds"):
        fig, axes = plt.subplots(1, n + 1, figsize=(4.2 * (n + 1), 3.6), squeeze=False)
        for algo in scores.algos:
            line, label = color(algo), CONFIGS[algo].label
            returns = scores.curve(algo, "return_mean")
            xs = (
                np.array(scores.steps, dtype=float)[None].repeat(n, 0)
                if x_axis == "steps"
                else scores.seconds(algo).mean(axis=0)
            )
            for index in range(n):
                point, band = iqm_band(returns[:, [index]], reps, seed)
                axes[0, index].plot(xs[index], point, color=line, label=label)
                axes[0, index].fill_between(xs[index], band[0], band[1], color=line, alpha=0.2, linewidth=0)
                axes[0, index].set(title=scores.envs[index], ylabel="return, IQM over seeds")
            point, band = iqm_band(scores.normalise(returns), reps, seed)
            x_all = xs.mean(axis=0)
            axes[0, n].plot(x_all, point, color=line, label=label)
            axes[0, n].fill_between(x_all, band[0], band[1], color=line, alpha=0.2, linewidth=0)
        axes[0, n].set(title="all tasks", ylabel="normalised return, IQM")
        for ax in axes[0]:
            ax.set_xlabel("env steps" if x_axis == "steps" else "training seconds (mean over seeds)")
        axes[0, 0].legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(sweep / f"evidence_return_{x_axis}.png", dpi=120)
        plt.close(fig)
    fig, axes = plt.subplots(2, n, figsize=(4.2 * n, 6.4), squeeze=False)
    for algo in scores.algos:
        line, label = color(algo), CONFIGS[algo].label
        params = scores.curve(algo, "params")
        layers = np.array(
            [
                [[ofenet_layers(r["units"]) for r in run.curve if int(r["step"]) in scores.steps] for run in row]
                for row in scores.runs[algo]
            ]
        )
        for index in range(n):
            for ax, values in ((axes[0, index], params[:, index]), (axes[1, index], layers[:, index])):
                ax.plot(scores.steps, np.median(values, axis=0), color=line, label=label)
                ax.fill_between(scores.steps, values.min(axis=0), values.max(axis=0), color=line, alpha=0.2, linewidth=0)
            axes[0, index].set(title=scores.envs[index], yscale="log", ylabel="parameters")
            axes[1, index].set(xlabel="env steps", ylabel="OFENet layers left")
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(sweep / "evidence_size.png", dpi=120)
    plt.close(fig)


def ofenet_layers(units: str) -> int:
    """OFENet layers with a unit alive, from a curve row's units per block (0 for models without OFENet)."""
    blocks = json.loads(units or "{}")
    return sum(width > 0 for block, widths in blocks.items() if block.startswith("ofenet") for width in widths)


def write_report(sweep: Path, scores: Scores, runs: list[Run], stats: dict[str, list[dict]], args: argparse.Namespace) -> str:
    """``evidence.md`` and its CSVs; returns the Markdown."""
    rows = [
        dict(
            env=r.env,
            algo=r.algo,
            seed=r.seed,
            score=round(r.score(args.tail), 1),
            final=round(r.final, 1),
            params=r.params,
            commit=r.commit,
        )
        for r in sorted(runs, key=lambda r: (r.env, r.algo, r.seed))
    ]
    columns = dict(
        env="env", algo="configuration", seed="seed", score="score", final="final", params="parameters", commit="commit"
    )
    write_results(sweep / "evidence_runs", rows, "Every run", columns)
    reference = CONFIGS[args.reference].label
    parts = [
        f"# Evidence: {', '.join(scores.envs)}\n",
        f"Runs of commit {runs[0].commit}; seeds {scores.seeds} (those finished for every task and configuration). "
        f"Score of a run: mean return of its evaluations after {1 - args.tail:.0%} of its steps. Normalised: 0 = "
        f"random actions ({', '.join(f'{e} {scores.low[i]:.1f}' for i, e in enumerate(scores.envs))}), 1 = {reference}'s "
        f"mean score. 95% intervals: stratified bootstrap, {args.reps} resamples (rliable). `python -m benchmarks.evidence "
        f"{sweep} --algos {' '.join(args.algos)} --reference {args.reference} --focus {args.focus}`.\n",
    ]
    task_columns = dict(env="env", algo="configuration", seeds="seeds", iqm="IQM", low="low", high="high")
    task_columns.update(final_mean="final (mean)", params="parameters")
    tables = (
        (
            "tasks",
            "Per task: IQM of the raw scores over seeds [95% interval], mean final return, median parameters",
            task_columns,
        ),
        (
            "aggregates",
            "Over the tasks: normalised scores",
            dict(algo="configuration", metric="metric", value="value", low="low", high="high"),
        ),
        (
            "improvements",
            "Probability of improvement P(X > Y) [95% interval]; 'unresolved' when it contains 0.5",
            dict(x="X", y="Y", probability="P(X > Y)", low="low", high="high", says="says"),
        ),
        (
            "compute",
            f"Size and training time, medians over the seeds (min..max): parameters as a share of {reference}'s, "
            "training minutes and their ratio to the reference's, training steps/s after the fold (the same env steps "
            "for every configuration of a task)",
            dict(
                env="env",
                algo="configuration",
                seeds="seeds",
                params="parameters",
                share="share",
                share_range="share range",
                minutes="minutes",
                minutes_range="minutes range",
                minutes_vs_reference="minutes / reference",
                after="after step",
                speed_after="steps/s after",
                speed_after_range="steps/s range",
            ),
        ),
    )
    for key, title, columns in tables:
        parts.append(write_results(sweep / f"evidence_{key}", stats[key], f"## {title}", columns))
    plots = ("intervals", "improvement", "profiles", "return_steps", "return_seconds", "size")
    parts.append("## Plots\n\n" + "\n".join(f"![{name}](evidence_{name}.png)" for name in plots) + "\n")
    text = "\n".join(parts)
    (sweep / "evidence.md").write_text(text)
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweep", type=Path)
    parser.add_argument(
        "--algos", nargs="+", default=["sac", "ofenet_sac", "xinet_sac", "small_ofenet_sac"], choices=list(CONFIGS)
    )
    parser.add_argument("--envs", nargs="+", default=None, help="default: every env of the sweep")
    parser.add_argument("--reference", default="ofenet_sac", help="the configuration whose mean score is 1")
    parser.add_argument("--focus", default="xinet_sac", help="X of the probabilities of improvement")
    parser.add_argument("--tail", type=float, default=0.2, help="share of the budget whose evaluations make the score")
    parser.add_argument("--reps", type=int, default=50_000, help="bootstrap resamples")
    parser.add_argument("--curve-reps", type=int, default=2_000, help="bootstrap resamples per learning-curve point")
    parser.add_argument("--random-episodes", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.focus not in args.algos or args.reference not in args.algos:
        parser.error("--focus and --reference must be among --algos")
    runs = load_runs(args.sweep, args.algos, args.envs)
    randoms = random_scores(args.sweep, sorted({run.env for run in runs}), args.random_episodes)
    scores = Scores(runs, args.algos, args.reference, randoms, args.tail)
    boots = bootstraps(scores, args.focus, args.reps, args.seed)
    stats = estimates(scores, args.focus, args.reps, args.seed, boots)
    stats["compute"] = compute(scores, args.reference)
    print(write_report(args.sweep, scores, runs, stats, args))
    plot_rliable(scores, boots, args.reps, args.sweep)
    plot_curves(scores, args.curve_reps, args.seed, args.sweep)


if __name__ == "__main__":
    main()
