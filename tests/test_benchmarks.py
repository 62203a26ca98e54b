"""The evidence sweep's tools: ``benchmarks.compare`` resumes a sliced sweep without redoing or duplicating work, the
small-from-scratch widths match XiNetSAC's final counts, the table rebuilds each run's final widths, and
``benchmarks.throughput`` times the sweep's small model."""

import argparse
import csv
import fcntl
import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import compare as compare_module
from benchmarks import throughput
from benchmarks.common import (
    CONFIGS,
    architecture_from_units,
    config_name,
    final_units,
    match_xinet,
    network_params,
    small_kwargs,
)
from benchmarks.report import final_actor, summarize, targets
from sb3_xinet import XiNetSAC

ROOT = Path(__file__).parents[1]
TINY = ["--envs", "Pendulum-v1", "--steps", "300", "--learning-starts", "100", "--ofenet-pretrain-steps", "20"]
TINY += ["--eval-freq", "100", "--eval-episodes", "1", "--final-episodes", "1", "--workers", "1"]
PRUNED_UNITS = {  # final widths of a pruned Pendulum-v1 XiNetSAC (a DenseNet layer of the state branch removed)
    "ofenet.state": [9, 0, 4, 7, 3, 5],
    "ofenet.state_action": [6, 8, 2, 9, 4, 7],
    "actor": [12, 30],
    "critic0": [80, 41],
    "critic1": [64, 50],
}


def compare(out: Path, *args: str) -> str:
    command = [sys.executable, "-m", "benchmarks.compare", *TINY, "--out", str(out), *args]
    return subprocess.run(command, check=True, capture_output=True, text=True, cwd=ROOT).stdout


def rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.slow
def test_a_sliced_sweep_resumes_from_its_checkpoint_and_skips_finished_runs(tmp_path, monkeypatch):
    out = tmp_path / "sweep"
    # past the slice, a queued run does not start (it would only reach its first checkpoint after the deadline)
    assert "not started (the slice is over)" in compare(out, "--algos", "xinet_sac", "--seeds", "0", "--max-hours", "1e-9")
    assert list(out.iterdir()) == []
    # a run under way when the slice ends stops at its next checkpoint
    args = compare_module.parse_args([*TINY, "--out", str(out), "--algos", "xinet_sac", "--pruning-end", "20000"])
    clock = iter([False])  # the slice has time when the run starts, none at its first checkpoint
    monkeypatch.setattr(compare_module, "slice_over", lambda _: next(clock, True))
    assert "paused at step 100" in compare_module.train_one("Pendulum-v1", "xinet_sac", 0, args)
    curve = out / "curves" / "Pendulum-v1_xinet_sac_0.csv"
    assert [row["step"] for row in rows(curve)] == ["100"]
    assert not (out / "runs.csv").exists()
    assert (out / "checkpoints" / "Pendulum-v1_xinet_sac_0" / "model.zip").exists()
    # a run resumes only at the commit it started at (its rows name one commit)
    state_path = out / "checkpoints" / "Pendulum-v1_xinet_sac_0" / "state.json"
    state = json.loads(state_path.read_text())
    state_path.write_text(json.dumps({**state, "commit": "0123456789ab"}))
    assert "started at 0123456789ab" in compare(out, "--algos", "xinet_sac", "--seeds", "0")
    assert [row["step"] for row in rows(curve)] == ["100"]
    state_path.write_text(json.dumps(state))

    compare(out, "--algos", "xinet_sac", "--seeds", "0")
    assert [row["step"] for row in rows(curve)] == ["100", "200", "300", "300"]  # the last one: final evaluation
    (run,) = rows(out / "runs.csv")
    assert (run["algo"], run["steps"], run["params"]) == ("xinet_sac", "300", rows(curve)[-1]["params"])
    assert run["commit"] == state["commit"]
    assert run["pruning_end"] == "20000"  # the schedule the run started with, kept through the resume
    final = XiNetSAC.load(out / "Pendulum-v1_xinet_sac_0.zip", device="cpu")  # the final model is kept
    assert (final.num_timesteps, final.pruning_summary().params) == (300, int(run["params"]))

    assert "0 runs to do, 1 finished" in compare(out, "--algos", "xinet_sac", "--seeds", "0")
    assert len(rows(out / "runs.csv")) == 1


def write_pruned_run(sweep: Path, params: int, algo: str = "xinet_sac") -> None:
    (sweep / "curves").mkdir(parents=True)
    fields = ["env", "algo", "seed", "steps", "params"]
    with (sweep / "runs.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerow(dict(env="Pendulum-v1", algo=algo, seed=0, steps=300, params=params))
    with (sweep / "curves" / f"Pendulum-v1_{algo}_0.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["step", "units"])
        writer.writeheader()
        writer.writerow(dict(step=300, units=json.dumps(PRUNED_UNITS)))


def test_small_widths_match_the_pruned_counts_network_by_network(tmp_path):
    write_pruned_run(tmp_path, params=0)
    (ofenet, actor, critic), target, small = match_xinet(tmp_path, "Pendulum-v1")
    assert 1 <= ofenet < 40 and 1 <= actor < 256 and 1 <= critic < 256
    for name in ("ofenet", "actor"):
        assert abs(small[name] - target[name]) / target[name] < 0.15
    critic_target = (target["critic0"] + target["critic1"]) / 2
    assert abs(small["critic0"] - critic_target) / critic_target < 0.05


def test_throughput_times_the_small_model_at_the_sweeps_widths():
    args = argparse.Namespace(env="Pendulum-v1", warmup=100, pretrain=20, device="cpu", small_widths="7,33,21")
    model = throughput.make_variant("small_ofenet_sac", args)
    pruned = {network.name: network.params for network in model.pruning_summary().networks}
    assert pruned == network_params("Pendulum-v1", small_kwargs(7, 33, 21))
    assert model.policy.gates == "none" and model.regularizer.cost_weight == 0.0  # a plain dense model, trained from scratch


def test_throughput_rebuilds_a_folded_run_from_its_curve():
    curve = ROOT / "benchmarks" / "results" / "evidence" / "curves" / "Hopper-v5_xinet_sac_0.csv"
    args = argparse.Namespace(env="Hopper-v5", warmup=100, pretrain=20, device="cpu", small_widths=None)
    model = throughput.make_variant("xinet_sac@folded", args, str(curve))
    (run,) = [
        run
        for run in rows(curve.parents[1] / "runs.csv")
        if run["algo"] == "xinet_sac" and run["seed"] == "0" and run["env"] == "Hopper-v5"
    ]
    assert model.pruning_summary().params == int(run["params"]) < int(run["initial_params"])
    assert model.policy.gates == "none" and model.regularizer.cost_weight == 0.0  # what the fold leaves
    with pytest.raises(ValueError, match="no thetas"):  # a curve cannot go on pruning
        throughput.make_variant("xinet_sac@pruned", args, str(curve))
    with pytest.raises(ValueError, match="rebuild"):  # widths read against another env's observation size
        throughput.make_variant("xinet_sac@folded", argparse.Namespace(**{**vars(args), "env": "Walker2d-v5"}), str(curve))


@pytest.mark.parametrize("algo", ["xinet_sac", "xinet_tqc"])
def test_the_table_rebuilds_final_widths_and_checks_their_count(tmp_path, algo):
    write_pruned_run(tmp_path, params=0)
    run = rows(tmp_path / "runs.csv")[0]
    with pytest.raises(ValueError, match="rebuild"):
        final_actor("Pendulum-v1", algo, final_units(tmp_path, run), "0", tmp_path)
    kwargs = dict(architecture=architecture_from_units(PRUNED_UNITS))
    params = sum(network_params("Pendulum-v1", kwargs, CONFIGS[algo].algo_class).values())
    if algo == "xinet_tqc":  # quantile critics: the count of the same widths differs from SAC's
        assert params > sum(network_params("Pendulum-v1", kwargs).values())
    paths, obs_dim = final_actor("Pendulum-v1", algo, PRUNED_UNITS, str(params), tmp_path)
    assert obs_dim == 3 and paths["exported_program"].exists() and paths["onnx"].exists()


@pytest.mark.slow
def test_a_run_already_running_in_another_process_is_skipped(tmp_path):
    out = tmp_path / "sweep"
    (out / "checkpoints").mkdir(parents=True)
    with (out / "checkpoints" / "Pendulum-v1_xinet_sac_0.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as the process training that run holds it
        assert "running in another process, skipped" in compare(out, "--algos", "xinet_sac", "--seeds", "0")
    assert not (out / "curves" / "Pendulum-v1_xinet_sac_0.csv").exists()
    assert not (out / "runs.csv").exists()


def test_the_targets_report_each_verdict_with_the_gap_the_seeds_can_resolve():
    def row(algo, mean, std, params_vs_dense):
        return dict(env="Hopper-v5", algo=algo, seeds=3, return_mean=mean, return_std=std, params=1000,
                    params_vs_dense=params_vs_dense)  # fmt: skip

    rows = [row("ofenet_sac", 1000.0, 30.0, 1.0), row("xinet_sac", 940.0, 40.0, 0.31)]
    rows.append(row("small_ofenet_sac", 900.0, 0.0, 0.31))
    text = "\n".join(targets(rows))
    assert "target <= 30%: NOT met" in text and "94.0% of dense" in text and "target >= 95%: NOT met" in text
    assert "difference -60 +/- 29 (standard error)" in text  # sqrt(40**2 / 3 + 30**2 / 3) = 28.9
    assert "and above small OFENet-SAC (from scratch)" in text and "difference +40 +/- 23" in text


def test_each_algorithm_is_held_against_its_own_dense_and_small_models():
    def run(algo, seed, ret, params, initial):
        return dict(env="Hopper-v5", algo=algo, seed=str(seed), steps="100", return_mean=str(ret), params=str(params),
                    initial_params=str(initial), steps_per_s="1.0")  # fmt: skip

    runs = [run("ofenet_sac", 0, 1000.0, 600, 600), run("xinet_sac", 0, 990.0, 150, 600)]
    runs += [run("ofenet_tqc", 0, 2000.0, 800, 800), run("xinet_tqc", 0, 1000.0, 400, 800)]
    latency = {(r["env"], r["algo"], r["seed"]): dict(exported_program=1.0, onnxruntime=1.0) for r in runs}
    rows = {row["algo"]: row for row in summarize(runs, latency)}
    assert rows["xinet_sac"]["params_vs_dense"] == 0.25 and rows["xinet_tqc"]["params_vs_dense"] == 0.5
    text = "\n".join(targets(list(rows.values())))
    assert "XiNetSAC keeps 25.0%" in text and "99.0% of dense OFENet-SAC's" in text
    assert "XiNetTQC keeps 50.0%" in text and "50.0% of dense OFENet-TQC's" in text


def test_results_of_the_old_configuration_names_read_as_today():
    """Sweeps written before the configurations were named as the zoo keys (``xinet``, ``dense`` ...) still report."""
    assert [config_name(old) for old in ("xinet", "dense", "small_tqc", "xinet_tqc")] == [
        "xinet_sac",
        "ofenet_sac",
        "small_ofenet_tqc",
        "xinet_tqc",
    ]
    with pytest.raises(ValueError, match="Unknown configuration"):
        config_name("xinet_ppo")
