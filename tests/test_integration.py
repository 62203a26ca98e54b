"""The XiNet algorithms inside SB3's machinery: vector envs, progress bar, loggers, env ids, callbacks, baselines,
devices."""

import csv

import numpy as np
import pytest
import torch as th
from stable_baselines3.common.callbacks import CallbackList, CheckpointCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.logger import configure
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from sb3_xinet import XiNetPruningCallback, XiNetSAC
from sb3_xinet.callbacks import XiNetPruningCallback as CallbackClass
from sb3_xinet.callbacks import with_pruning_callback
from tests.helpers import PRUNING, STEPS, make_model, observations


def test_vector_env_progress_bar_and_tensorboard(tmp_path, model_class):
    env = make_vec_env("Pendulum-v1", n_envs=2, seed=0)
    model = make_model(env, model_class=model_class, tensorboard_log=str(tmp_path), verbose=0)
    model.learn(STEPS, progress_bar=True, log_interval=1)
    assert model.num_timesteps == STEPS
    assert model.pruning_summary().params < model.pruning_summary().initial_params

    (run,) = (tmp_path).iterdir()
    events = EventAccumulator(str(run))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    for tag in ("xinet/params", "xinet/params_fraction", "xinet/params/ofenet", "xinet/cost_term", "train/aux_loss"):
        assert tag in tags, tag
    assert "xinet/units/ofenet.state/0" in tags and "xinet/units/critic1/1" in tags
    initial = events.Scalars("xinet/params_initial")[-1].value
    assert events.Scalars("xinet/params")[-1].value < initial == model.pruning_summary().initial_params


def test_logger_records_the_pruning(tmp_path):
    model = make_model()
    model.set_logger(configure(str(tmp_path), ["csv"]))
    model.learn(STEPS, log_interval=1)
    with open(tmp_path / "progress.csv") as handle:
        rows = list(csv.DictReader(handle))
    last = rows[-1]
    summary = model.pruning_summary()
    assert int(float(last["xinet/params_initial"])) == summary.initial_params
    removed = [int(float(row["xinet/units_removed"])) for row in rows if row["xinet/units_removed"]]
    assert removed == sorted(removed) and removed[-1] > 0
    assert float(last["xinet/cost_active"]) == 1


def test_from_an_env_id_builds_the_hopper_networks():
    model = XiNetSAC("MlpPolicy", "Hopper-v5", buffer_size=100)
    summary = model.pruning_summary()
    assert summary["ofenet"].params == 118_485  # the OFENet paper's Hopper network, 6 x 40 units per branch
    assert model.policy.actor.latent_pi.in_features == 11 + 240
    assert model.policy.critic.q_networks[0].latent.in_features == 11 + 240 + 3 + 240


def test_a_given_callback_replaces_the_default_and_follows_a_changed_schedule(tmp_path):
    model = make_model(pruning_start=None)
    model.pruning_schedule = model.pruning_schedule.replace(start=150, freq=25)
    callback = XiNetPruningCallback()
    model.learn(STEPS, callback=CallbackList([CheckpointCallback(10**6, str(tmp_path)), callback]))
    summary = model.pruning_summary()
    assert summary.params < summary.initial_params
    assert all(150 <= step <= STEPS for step, _ in callback.removals)
    removed = sum(len(units) for _, blocks in callback.removals for layers in blocks.values() for units in layers.values())
    assert removed == summary.initial_units - summary.units

    default = with_pruning_callback([CheckpointCallback(10**6, str(tmp_path))])
    assert sum(isinstance(item, CallbackClass) for item in default) == 1
    assert with_pruning_callback(callback) is callback


def test_a_callback_list_keeps_the_rollout_locals_beside_the_default_pruning(tmp_path):
    """The user's CallbackList object itself sees the rollout's locals (as SB3's callback tests ask), and the
    default pruning callback still runs beside it."""
    model = make_model()
    checkpoint = CheckpointCallback(10**6, str(tmp_path))
    callbacks = CallbackList([checkpoint])
    model.learn(STEPS, callback=callbacks)
    assert model.env.observation_space.contains(callbacks.locals["new_obs"][0])
    assert checkpoint.locals["new_obs"] is callbacks.locals["new_obs"]
    summary = model.pruning_summary()
    assert summary.params < summary.initial_params


def test_before_pruning_xinet_is_its_dense_baseline(model_class):
    """Gated but before pruning starts, XiNetSAC (XiNetTQC) computes exactly what dense OFENet-SAC (-TQC) computes:
    a run and its dense baseline of the same seed and commit differ only from ``pruning_start`` on."""
    steps = PRUNING["learning_starts"] + 50
    gated = make_model(model_class=model_class, pruning_start=None).learn(steps)
    dense_kwargs = dict(cost_weight=0.0, policy_kwargs={**PRUNING["policy_kwargs"], "gates": "none"})
    dense = make_model(model_class=model_class, **dense_kwargs).learn(steps)
    assert not dense.policy.ofenet.gate_parameters()
    obs = observations()
    np.testing.assert_allclose(gated.predict(obs, deterministic=True)[0], dense.predict(obs, deterministic=True)[0], atol=1e-6)


def test_small_from_scratch_is_built_at_the_given_widths():
    policy_kwargs = dict(
        gates="none", net_arch=dict(pi=[16], qf=[24, 8]), ofenet_kwargs=dict(state_units=[4, 4], state_action_units=[5])
    )
    model = XiNetSAC("MlpPolicy", "Pendulum-v1", buffer_size=100, cost_weight=0.0, policy_kwargs=policy_kwargs)
    summary = model.pruning_summary()
    units = {(layer.block, layer.layer): layer.units for network in summary.networks for layer in network.layers}
    assert units == {
        ("ofenet.state", 0): 4,
        ("ofenet.state", 1): 4,
        ("ofenet.state_action", 0): 5,
        ("actor", 0): 16,
        ("critic0", 0): 24,
        ("critic0", 1): 8,
        ("critic1", 0): 24,
        ("critic1", 1): 8,
    }
    # OFENet: state layers (3+1+2)*4 + (7+1+2)*4; state-action (11+1+1+2)*5 on [phi_s, a]; head (17+1)*3
    assert summary["ofenet"].params == 24 + 40 + 75 + 54


@pytest.mark.skipif(not th.cuda.is_available(), reason="no CUDA device")
def test_cuda():
    model = make_model(device="cuda").learn(PRUNING["learning_starts"] + 100)
    assert next(model.policy.parameters()).is_cuda
    assert model.pruning_summary().params <= model.pruning_summary().initial_params


@pytest.mark.parametrize(("gates", "estimator"), [("ofenet", "straight_through"), ("all", "reinforce")])
def test_gate_options(gates, estimator, model_class):
    """``gates="ofenet"`` prunes OFENet only; the REINFORCE estimator trains and prunes too."""
    policy_kwargs = {**PRUNING["policy_kwargs"], "gates": gates, "gate_estimator": estimator}
    model = make_model(model_class=model_class, policy_kwargs=policy_kwargs).learn(STEPS)
    summary = model.pruning_summary()
    assert summary["ofenet"].params < summary["ofenet"].initial_params
    heads = [summary[name] for name in ("actor", "critic0", "critic1")]
    if gates == "ofenet":
        assert not model.policy.actor.latent_pi.gates()
        assert all(network.units == network.initial_units for network in heads)
    else:
        assert any(network.units < network.initial_units for network in heads)


def test_a_plain_function_callback_is_wrapped_as_sb3_does(tmp_path):
    """SB3 accepts a function ``(locals, globals) -> bool`` as callback, alone or in a list."""
    calls = []

    def count_steps(_locals, _globals) -> bool:
        calls.append(1)
        return True

    model = make_model(pruning_start=None)
    model.learn(50, callback=count_steps)
    assert len(calls) == 50
    model.learn(30, callback=[count_steps, CheckpointCallback(10**6, str(tmp_path))])
    assert len(calls) == 80
