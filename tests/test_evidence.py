"""benchmarks/evidence.py: the score of a run, one commit per comparison, and what rliable's intervals say.

The sweep is written as ``benchmarks.compare`` writes one (its row and curve formats), with returns drawn so that
the answer is known: one configuration far above the others, two alike.
"""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from benchmarks.beside import run_rows
from benchmarks.compare import CURVE_FIELDS, RUN_FIELDS, append_row
from benchmarks.evidence import Scores, bootstraps, compute, estimates, load_runs, random_scores

ENVS = ("Pendulum-v1", "MountainCarContinuous-v0")
STEPS, EVAL_FREQ, SEEDS = 1000, 100, range(5)
FOLD = 700  # XiNetSAC's pruning_end: it trains at twice the others' speed after it
UNITS = json.dumps({"ofenet.state": [4, 0], "ofenet.state_action": [3, 2], "actor": [8, 8]})


def write_sweep(folder: Path, level: dict[str, float], commit: str = "0123456789ab") -> None:
    """Runs whose periodic returns are ``level[algo]`` plus a noise drawn per task and seed (configurations at one
    level score alike), with a last-20% jump of +100 (so the score can be told from the mean of the whole curve)
    and a final evaluation of -1000 (so it can be told from the final row). Every configuration trains at 50 steps/s
    but XiNetSAC, at 100 after :data:`FOLD`; dense OFENet-SAC ends with 1000 parameters, the others with 300 + seed."""
    (folder / "curves").mkdir(parents=True, exist_ok=True)
    for task, env in enumerate(ENVS):
        for algo, base in level.items():
            for seed in SEEDS:
                noise = np.random.default_rng([task, seed]).normal(0, 50)
                curve = folder / "curves" / f"{env}_{algo}_{seed}.csv"
                pruned = algo == "xinet_sac"
                seconds = 0.0
                for step in range(EVAL_FREQ, STEPS + 1, EVAL_FREQ):
                    value = base + noise + (100 if step > 0.8 * STEPS else 0)
                    row = dict(env=env, algo=algo, seed=seed, step=step, return_mean=value, return_std=1.0)
                    row["params"] = 1000 - step // 2
                    speed = 100.0 if pruned and step > FOLD else 50.0
                    seconds += EVAL_FREQ / speed
                    append_row(curve, CURVE_FIELDS, dict(row, steps_per_s=speed, units=UNITS))
                append_row(curve, CURVE_FIELDS, dict(row, return_mean=-1000.0, steps_per_s="", units=UNITS))
                params = 1000 if algo == "ofenet_sac" else 300 + seed
                final = dict(env=env, algo=algo, seed=seed, steps=STEPS, return_mean=-1000.0, params=params, commit=commit)
                final.update(params_fraction=params / 1000, wall_s=seconds, pruning_end=FOLD if pruned else "")
                append_row(folder / "runs.csv", RUN_FIELDS, final)
    (folder / "random_scores.json").write_text(json.dumps(dict.fromkeys(ENVS, 0.0)))


LEVELS = {"ofenet_sac": 1000.0, "xinet_sac": 2000.0, "small_ofenet_sac": 2000.0}


def test_a_run_scores_the_mean_of_its_last_fifth_of_evaluations(tmp_path):
    write_sweep(tmp_path, LEVELS)
    runs = load_runs(tmp_path, list(LEVELS), None)
    assert len(runs) == len(ENVS) * len(LEVELS) * len(SEEDS)
    for run in runs:
        assert len(run.curve) == STEPS // EVAL_FREQ  # the final row is not a periodic evaluation
        middle = float(run.curve[0]["return_mean"])
        assert run.score(0.2) == pytest.approx(middle + 100)
        assert run.final == -1000.0


def test_runs_side_by_side_are_scored_as_the_evidence_scores_them(tmp_path):
    write_sweep(tmp_path, LEVELS)
    runs = {run.seed: run for run in load_runs(tmp_path, ["xinet_sac"], [ENVS[0]])}
    rows, curves = run_rows(tmp_path, "xinet_sac", "XiNetSAC", ENVS[0])
    assert [row["seed"] for row in rows] == sorted(runs) and len(curves) == len(runs)
    for row in rows:
        assert row["score"] == pytest.approx(runs[row["seed"]].score(0.2), abs=0.05)
        assert row["final"] == -1000.0  # the final evaluation stays beside the score


def test_runs_of_several_commits_are_refused(tmp_path):
    write_sweep(tmp_path, {"ofenet_sac": 1000.0})
    write_sweep(tmp_path, {"xinet_sac": 1000.0}, commit="ba9876543210")
    with pytest.raises(ValueError, match="one committed code version"):
        load_runs(tmp_path, ["ofenet_sac", "xinet_sac"], None)
    with pytest.raises(ValueError, match="one committed code version"):
        write_sweep(tmp_path / "dirty", {"xinet_sac": 1.0}, commit="0123456789ab+changes")
        load_runs(tmp_path / "dirty", ["xinet_sac"], None)


def test_intervals_say_better_where_it_is_and_unresolved_where_it_is_not(tmp_path):
    write_sweep(tmp_path, LEVELS)
    runs = load_runs(tmp_path, list(LEVELS), None)
    scores = Scores(runs, list(LEVELS), "ofenet_sac", dict.fromkeys(ENVS, 0.0), tail=0.2)
    # the reference normalises to 1 on every task: its mean score is the scale
    np.testing.assert_allclose(scores.normalised["ofenet_sac"].mean(axis=0), 1.0)
    found = estimates(scores, "xinet_sac", 500, 0, bootstraps(scores, "xinet_sac", reps=500, seed=0))
    says = {row["y"]: row["says"] for row in found["improvements"]}
    assert says == {"dense OFENet-SAC": "better", "small OFENet-SAC": "unresolved"}
    assert all(row["low"] <= row["iqm"] <= row["high"] for row in found["tasks"])
    assert all(row["low"] <= row["value"] <= row["high"] for row in found["aggregates"])
    iqm = {row["algo"]: row for row in found["aggregates"] if row["metric"] == "IQM"}
    assert iqm["XiNetSAC"]["low"] > iqm["dense OFENet-SAC"]["high"]


def test_size_and_training_time_are_read_per_task_after_the_fold(tmp_path):
    write_sweep(tmp_path, LEVELS)
    scores = Scores(load_runs(tmp_path, list(LEVELS), None), list(LEVELS), "ofenet_sac", dict.fromkeys(ENVS, 0.0), 0.2)
    rows = {(row["env"], row["algo"]): row for row in compute(scores, "ofenet_sac")}
    assert len(rows) == len(ENVS) * len(LEVELS)
    for env in ENVS:
        dense, xinet, small = (rows[env, label] for label in ("dense OFENet-SAC", "XiNetSAC", "small OFENet-SAC"))
        # the window is the steps after XiNetSAC's fold for every configuration, not the whole run
        assert xinet["after"] == small["after"] == FOLD
        assert (dense["speed_after"], xinet["speed_after"], small["speed_after"]) == (50.0, 100.0, 50.0)
        assert (dense["minutes"], small["minutes"]) == (round(STEPS / 50 / 60, 1),) * 2
        assert xinet["minutes_vs_reference"] == round((FOLD / 50 + (STEPS - FOLD) / 100) / (STEPS / 50), 2)
        assert (dense["share"], xinet["share"], xinet["share_range"]) == (1.0, 0.302, "0.3..0.304")


def test_random_scores_are_measured_once_and_kept(tmp_path):
    first = random_scores(tmp_path, ["Pendulum-v1"], episodes=2)
    assert -2000 < first["Pendulum-v1"] < 0  # 200 steps of rewards in [-16.3, 0]
    kept = json.loads((tmp_path / "random_scores.json").read_text())
    assert kept == first and random_scores(tmp_path, ["Pendulum-v1"], episodes=50) == first


def test_the_command_writes_the_report_and_every_plot(tmp_path):
    write_sweep(tmp_path, LEVELS)
    command = [sys.executable, "-m", "benchmarks.evidence", str(tmp_path), "--algos", *LEVELS, "--reps", "200"]
    subprocess.run([*command, "--curve-reps", "50"], check=True, capture_output=True, cwd=Path(__file__).parents[1])
    report = (tmp_path / "evidence.md").read_text()
    assert "Runs of commit 0123456789ab" in report and "| XiNetSAC | dense OFENet-SAC |" in report
    assert "| Pendulum-v1 | XiNetSAC | 5 | 302 | 0.302 | 0.3..0.304 |" in report
    for name in ("intervals", "improvement", "profiles", "return_steps", "return_seconds", "size"):
        assert (tmp_path / f"evidence_{name}.png").stat().st_size > 10_000, name
