"""RL Zoo training, evaluation and hyperparameter search through ``python -m sb3_xinet.train`` / ``enjoy``."""

import ctypes.util
import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import yaml

from sb3_xinet import XiNetSAC
from sb3_xinet.zoo import ALGOS, default_config, prepare

# A tiny budget with the packaged Pendulum-v1 entry; a fast schedule so that pruning happens within it
TINY = ["-params", "learning_starts:100", "ofenet_pretrain_steps:20", "pruning_start:150", "prune_freq:50", "cost_weight:20.0"]


def zoo(module: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", f"sb3_xinet.{module}", "--num-threads", "1", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.mark.slow
@pytest.mark.parametrize(("algo", "cost_model"), [("xinet_sac", "params"), ("xinet_sac", "time"), ("xinet_tqc", "params")])
def test_train_then_enjoy_a_pruned_model(tmp_path, algo, cost_model):
    args = ["--algo", algo, "--env", "Pendulum-v1", "-f", "logs"]
    result = zoo("train", *args, "-n", "600", "--seed", "0", *TINY, f"cost_model:{cost_model}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    saved = tmp_path / "logs" / algo / "Pendulum-v1_1" / "Pendulum-v1.zip"
    model = ALGOS[algo].load(saved, device="cpu")
    assert model.regularizer.cost_model == cost_model
    assert (model.regularizer.time_calibration is not None) == (cost_model == "time")
    summary = model.pruning_summary()
    assert summary.params < summary.initial_params

    enjoy = zoo("enjoy", *args, "--no-render", "-n", "400", "--deterministic", cwd=tmp_path)
    assert enjoy.returncode == 0, enjoy.stderr[-3000:]
    assert "Mean reward" in enjoy.stdout


@pytest.mark.slow
@pytest.mark.skipif(ctypes.util.find_library("EGL") is None, reason="MuJoCo renders headless through EGL")
def test_record_video_of_a_saved_model(tmp_path):
    folder = tmp_path / "logs" / "xinet_sac" / "Hopper-v5_1"
    folder.mkdir(parents=True)
    small = dict(net_arch=[8], ofenet_kwargs=dict(state_units=[4], state_action_units=[4]))
    XiNetSAC("MlpPolicy", "Hopper-v5", buffer_size=10, policy_kwargs=small).save(folder / "Hopper-v5.zip")
    result = subprocess.run(
        [sys.executable, "-m", "sb3_xinet.record_video", "--algo", "xinet_sac", "--env", "Hopper-v5", "-f", "logs", "-n", "9"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "MUJOCO_GL": "egl"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert list((folder / "videos").glob("*.mp4"))


@pytest.mark.slow
def test_optimize_two_trials_on_a_sqlite_storage(tmp_path):
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    args = ["--algo", "xinet_sac", "--env", "Pendulum-v1", "-n", "300", "-f", "logs", "--optimize", "--n-trials", "2"]
    args += ["--n-startup-trials", "2", "--n-evaluations", "1", "--eval-episodes", "1", "--no-optim-plots"]
    args += ["--storage", storage, "--study-name", "xinet", "--pruner", "none", *TINY]
    result = zoo("train", *args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    study = optuna.load_study(study_name="xinet", storage=storage)
    trials = [trial for trial in study.trials if trial.state == optuna.trial.TrialState.COMPLETE]
    assert len(trials) == 2
    assert {"cost_weight", "prune_threshold", "theta_learning_rate", "ofenet_units"} <= set(trials[0].params)

    # replay trial 1 of the study (the zoo's --trial-id reads its stored parameters back through our converter)
    replay = ["--algo", "xinet_sac", "--env", "Pendulum-v1", "-n", "150", "-f", "replay", "--seed", "0"]
    replay += ["--storage", storage, "--study-name", "xinet", "--trial-id", "1", *TINY]
    result = zoo("train", *replay, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    model = XiNetSAC.load(tmp_path / "replay" / "xinet_sac" / "Pendulum-v1_1" / "Pendulum-v1.zip", device="cpu")
    params = study.trials[1].params
    assert model.prune_threshold == params["prune_threshold"]
    assert model.policy.theta_learning_rate == pytest.approx(params["theta_learning_rate"])
    assert model.initial_units["ofenet.state"] == [params["ofenet_units"]] * 6


@pytest.mark.slow
def test_a_study_shared_by_two_workers(tmp_path):
    """Two processes, one trial each, on one storage: the way to spread a search over machines (with the time
    cost model, as ``-params cost_model:time`` asks, each trial calibrating its own)."""
    storage = f"sqlite:///{tmp_path / 'shared.db'}"
    args = ["--algo", "xinet_sac", "--env", "Pendulum-v1", "-n", "300", "--optimize", "--n-trials", "1"]
    args += ["--n-startup-trials", "2", "--n-evaluations", "1", "--eval-episodes", "1", "--no-optim-plots"]
    args += ["--storage", storage, "--study-name", "shared", "--pruner", "none", *TINY, "cost_model:time"]
    command = [sys.executable, "-m", "sb3_xinet.train", "--num-threads", "1", *args]
    # create the storage first: two workers creating a fresh sqlite schema at once race (Optuna's advice)
    optuna.create_study(study_name="shared", storage=storage, direction="maximize")
    workers = [
        subprocess.Popen([*command, "-f", f"logs{i}"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i in (0, 1)
    ]
    for worker in workers:
        stdout, stderr = worker.communicate(timeout=600)
        assert worker.returncode == 0, stderr[-3000:]
        assert "('cost_model', 'time')" in stdout
    study = optuna.load_study(study_name="shared", storage=storage)
    assert [trial.state for trial in study.trials] == [optuna.trial.TrialState.COMPLETE] * 2


def test_the_packaged_config_is_found_and_overridable(tmp_path):
    argv = prepare(["--algo", "xinet_sac", "--env", "Hopper-v5"])
    assert argv[-4:-2] == ["--conf-file", str(default_config("xinet_sac"))]
    own = tmp_path / "own.yml"
    own.write_text(yaml.safe_dump({"Hopper-v5": {"policy": "MlpPolicy", "n_timesteps": 10}}))
    for flag in ("-conf", "--conf-file", "--conf"):
        argv = ["--algo", "xinet_sac", "--env", "Hopper-v5", flag, str(own)]
        assert prepare(argv) == [*argv, "--num-threads", "1"]
    argv = ["--algo", "sac", "--env", "Hopper-v5"]
    assert prepare(argv) == [*argv, "--num-threads", "1"]


@pytest.mark.parametrize("flag", ["--num-threads", "--num-thr"])
def test_one_torch_thread_unless_the_user_chooses(flag):
    assert prepare(["--algo", "xinet_sac", "--env", "Hopper-v5"])[-2:] == ["--num-threads", "1"]
    argv = ["--algo", "xinet_sac", "--env", "Hopper-v5", flag, "2"]
    assert "1" not in prepare(argv)[len(argv) :]


@pytest.mark.parametrize("env_id", ["Pendulum-v1", "Hopper-v5", "Walker2d-v5", "HalfCheetah-v5", "Ant-v5", "Humanoid-v5"])
@pytest.mark.parametrize("algo", ["xinet_sac", "ofenet_sac", "xinet_tqc", "ofenet_tqc"])
def test_packaged_entries_build(algo, env_id):
    """Every packaged entry passes the checks and builds its model (MuJoCo v5 entries set learning_starts)."""
    prepare(["--algo", algo, "--env", env_id])
    with default_config(algo).open() as handle:
        entry = dict(yaml.load(handle, Loader=yaml.UnsafeLoader)[env_id])
    if env_id != "Pendulum-v1":
        assert entry["learning_starts"] == 10_000
    kwargs = {key: value for key, value in entry.items() if key not in ("n_timesteps", "policy")}
    model = ALGOS[algo]("MlpPolicy", env_id, buffer_size=10, **kwargs)
    assert model.regularizer.enabled == algo.startswith("xinet")
    assert (model.policy.gates == "none") == algo.startswith("ofenet")


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"policy": "MlpPolicy", "n_timesteps": 10, "cost_wieght": 1.0}, "'cost_wieght'"),
        ({"policy": "MlpPolicy", "n_timesteps": 10, "cost_weight": -1.0}, "cost_weight"),
        ({"policy": "MlpPolicy", "n_timesteps": 10, "prune_threshold": 2}, "prune_threshold"),
        ({"policy": "MlpPolicy", "n_timesteps": 10, "policy_kwargs": {"ofenet_size": 3}}, "'ofenet_size'"),
        ({"policy": "MlpPolicy", "n_timesteps": 10, "policy_kwargs": "dict(gate=None)"}, "'gate'"),
    ],
)
def test_bad_yaml_entries_name_the_problem(tmp_path, entry, message):
    config = tmp_path / "bad.yml"
    config.write_text(yaml.safe_dump({"Pendulum-v1": entry}))
    with pytest.raises(ValueError, match=message) as error:
        prepare(["--algo", "xinet_sac", "--env", "Pendulum-v1", "-conf", str(config)])
    assert "Pendulum-v1" in str(error.value) and str(config) in str(error.value)


def test_an_env_missing_from_the_yaml(tmp_path):
    config = tmp_path / "only_hopper.yml"
    config.write_text(yaml.safe_dump({"Hopper-v5": {"policy": "MlpPolicy", "n_timesteps": 10}}))
    with pytest.raises(ValueError, match="no entry for Pendulum-v1"):
        prepare(["--algo", "xinet_sac", "--env", "Pendulum-v1", "-conf", str(config)])


@pytest.mark.slow
def test_the_zoo_parallel_train_callback_is_refused_with_a_reason(tmp_path):
    args = ["--algo", "xinet_sac", "--env", "Pendulum-v1", "-n", "200", "-f", "logs"]
    result = zoo("train", *args, "-params", "callback:'rl_zoo3.callbacks.ParallelTrainCallback'", cwd=tmp_path)
    assert result.returncode != 0
    assert "do not support rl_zoo3's ParallelTrainCallback" in result.stderr
    assert result.stderr.count("Traceback") == 1, result.stderr  # refused before the zoo starts, nothing to clean up


def test_the_parallel_train_callback_of_a_yaml_entry_is_refused_before_the_zoo_starts(tmp_path):
    config = tmp_path / "parallel.yml"
    entry = {"policy": "MlpPolicy", "n_timesteps": 10, "callback": "rl_zoo3.callbacks.ParallelTrainCallback"}
    config.write_text(yaml.safe_dump({"Pendulum-v1": entry}))
    with pytest.raises(ValueError, match="ParallelTrainCallback"):
        prepare(["--algo", "xinet_sac", "--env", "Pendulum-v1", "-conf", str(config)])


@pytest.mark.slow
def test_an_unknown_env_is_named(tmp_path):
    result = zoo("train", "--algo", "xinet_sac", "--env", "Hoper-v5", "-n", "10", "-f", "logs", cwd=tmp_path)
    assert result.returncode != 0
    assert "Hoper-v5 not found in gym registry" in result.stderr
