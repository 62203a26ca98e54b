"""The RL Zoo's own tests (tests/test_train.py, test_enjoy.py, test_hyperparams_opt.py of rl-baselines3-zoo),
with ``python train.py`` -> ``python -m sb3_xinet.train``, ``python enjoy.py`` -> ``python -m sb3_xinet.enjoy``
and the zoo's sac/tqc -> our four keys. Commands kept as the zoo writes them."""

import shlex
import subprocess

import pytest

N_STEPS = 100
TRAIN = "python -m sb3_xinet.train"
ENJOY = "python -m sb3_xinet.enjoy"
ALGOS = ("xinet_sac", "ofenet_sac", "xinet_tqc", "ofenet_tqc")


def run(cmd):
    return subprocess.run(shlex.split(cmd), capture_output=True, text=True)


@pytest.mark.parametrize("algo", ALGOS)
def test_train(tmp_path, algo):
    result = run(f"{TRAIN} -n {N_STEPS} --algo {algo} --env Pendulum-v1 --log-folder {tmp_path} ")
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.mark.parametrize("algo", ["xinet_sac", "xinet_tqc"])
def test_save_load_replay_buffer(tmp_path, algo):
    env_id = "Pendulum-v1"
    cmd = (
        f"{TRAIN} -n {N_STEPS} --algo {algo} --env {env_id} --log-folder {tmp_path} "
        "--save-replay-buffer -params buffer_size:1000 --env-kwargs g:8.0 --eval-env-kwargs g:5.0 "
    )
    result = run(cmd)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / f"{algo}/{env_id}_1/replay_buffer.pkl").is_file()
    result = run(cmd + f"-i {tmp_path}/{algo}/{env_id}_1/{env_id}.zip")
    assert result.returncode == 0, result.stderr[-3000:]


def test_parallel_train_is_refused_with_a_reason(tmp_path):
    cmd = (
        f"{TRAIN} -n 1000 --algo xinet_sac --env Pendulum-v1 --log-folder {tmp_path} "
        "-params monitor_kwargs:'dict(info_keywords=(\"TimeLimit.truncated\",))' "
        "callback:\"'rl_zoo3.callbacks.ParallelTrainCallback'\""
    )
    result = run(cmd)
    assert result.returncode != 0 and "ParallelTrainCallback" in result.stderr


@pytest.mark.parametrize("algo", ["xinet_sac", "xinet_tqc"])
def test_load(tmp_path, algo):
    env_id = "Pendulum-v1"
    config = tmp_path / "config.yml"
    config.write_text(
        f"{env_id}:\n  n_envs: 8\n  n_timesteps: !!float 1e6\n  policy: 'MlpPolicy'\n  ent_coef: 0.0\n"
        "  learning_starts: 200\n  ofenet_pretrain_steps: 100\n  env_kwargs:\n    g: 0.0\n"
    )
    cmd = (
        f"{TRAIN} -c {config} --algo {algo} --env {env_id} -n 1000 -f {tmp_path} "
        f"-params n_envs:1 --eval-freq 500 --save-freq 500 -P"
    )
    result = run(cmd)
    assert result.returncode == 0, result.stderr[-3000:]
    base = f"{ENJOY} --algo {algo} --env {env_id} -n {N_STEPS} -f {tmp_path} --no-render "
    for flags in ("--load-best -P", "--load-checkpoint 500", "--load-last-checkpoint"):
        result = run(base + flags)
        assert result.returncode == 0, (flags, result.stderr[-3000:])


def test_custom_yaml(tmp_path):
    import sb3_xinet

    hyperparams = f"{sb3_xinet.__path__[0]}/hyperparams/xinet_sac.yml"
    cmd = (
        f"{TRAIN} -n {N_STEPS} --algo ofenet_sac --env Pendulum-v1 --log-folder {tmp_path} "
        f"-conf {hyperparams} -params learning_starts:50 ofenet_pretrain_steps:20 "
        "policy:\"'sb3_xinet.MlpPolicy'\""
    )
    result = run(cmd)
    assert result.returncode == 0, result.stderr[-3000:]


def test_default_hyperparameters(tmp_path):
    config_path = tmp_path / "default_hyperparams.yml"
    config_path.write_text("default:\n  policy: 'MlpPolicy'\n  n_timesteps: 200\n  learning_starts: 50\n")
    result = run(f"{TRAIN} -n {N_STEPS} --algo xinet_sac --env Pendulum-v1 --log-folder {tmp_path} -conf {config_path} ")
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.mark.parametrize("algo", ["xinet_sac", "xinet_tqc"])
def test_optimize(tmp_path, algo):
    cmd = (
        f"{TRAIN} -n {N_STEPS} --algo {algo} --env Pendulum-v1 --log-folder {tmp_path} "
        f"-params policy_kwargs:'dict(net_arch=[32])' "
        f"--no-optim-plots --seed 14 --n-trials 2 --n-jobs 1 "
        f"--sampler random --pruner median --n-evaluations 2 --n-startup-trials 1 -optimize"
    )
    result = run(cmd)
    assert result.returncode == 0, result.stderr[-3000:]
