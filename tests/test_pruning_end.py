"""The end of pruning: surviving thetas folded into the weights, the gates gone, training goes on as OFENet-SAC."""

import csv
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from stable_baselines3.common.logger import configure

from sb3_xinet import XiNetSAC, XiNetTQC
from sb3_xinet.common.algorithm import XiNetAlgorithm
from sb3_xinet.cost import count_parameters
from tests.helpers import PRUNING, assert_targets_match, make_model, observations, units

END = 300  # env steps: after PRUNING's pruning_start (150), before STEPS (600)


def mean_gate_outputs(model: XiNetAlgorithm) -> list[th.Tensor]:
    """On a fixed batch: the deterministic action, OFENet's features as its readers see them (the first layers
    of the actor and of a critic, the aux head), every critic's and target critic's Q. (The features themselves
    change: a unit's output is no longer scaled by its theta, the weights that read it are.)"""
    obs = th.as_tensor(observations(64))
    actions = th.as_tensor(np.random.default_rng(3).uniform(-2, 2, size=(64, 1)), dtype=th.float32)
    policy = model.policy
    policy.set_training_mode(False)
    with th.no_grad():
        z_sa = policy.ofenet.phi_sa(obs, actions)
        return [
            policy.actor(obs, deterministic=True),
            policy.actor.latent_pi.layers[0].linear(policy.ofenet.phi_s(obs)),
            policy.critic.q_networks[0].latent.layers[0].linear(z_sa),
            policy.ofenet.head(z_sa),
            *policy.critic.q_values(z_sa, stochastic=False),
            *policy.critic_target.q_values(z_sa, stochastic=False),
        ]


def test_folding_the_gates_changes_no_mean_gated_output(model_class):
    """Thetas anywhere in (threshold, 1] in every network: after the fold the networks have no gate left and
    compute what they computed with mean gates."""
    model = make_model(model_class=model_class, pruning_start=None).learn(PRUNING["learning_starts"] + 20)
    generator = th.Generator().manual_seed(0)
    with th.no_grad():
        for block in model.policy.gated_blocks().values():
            for gate in block.gates():
                gate.theta.copy_(th.rand(gate.n_units, generator=generator) * 0.95 + 0.05)
        for q_net, q_target in zip(model.policy.critic.q_networks, model.policy.critic_target.q_networks, strict=True):
            q_target.load_state_dict(q_net.state_dict())
    before = mean_gate_outputs(model)
    model.end_pruning()
    assert all(not block.gates() for block in model.policy.gated_blocks().values())
    assert not any(name.endswith("theta") for name, _ in model.policy.named_parameters())
    for want, have in zip(before, mean_gate_outputs(model), strict=True):
        th.testing.assert_close(have, want, rtol=1e-5, atol=1e-6)
    # the thetas left the optimizers: one parameter group each, every parameter of the networks in it
    for optimizer in model.policy.optimizers():
        assert len(optimizer.param_groups) == 1


def test_training_ends_pruning_on_schedule_and_logs_it(tmp_path, model_class):
    model = make_model(model_class=model_class, pruning_end=END)
    model.set_logger(configure(str(tmp_path), ["csv"]))
    model.learn(END + 200, log_interval=1)
    assert model.pruning_ended and not model.regularizer.active
    assert model.policy.gates == "none" and model.policy_kwargs["gates"] == "none"
    summary = model.pruning_summary()
    assert summary.params == count_parameters(model.policy.networks().values()) < summary.initial_params
    assert "total" in str(summary)
    with open(tmp_path / "progress.csv") as handle:
        rows = list(csv.DictReader(handle))
    ended = [float(row["xinet/pruning_ended"]) for row in rows if row["xinet/pruning_ended"]]
    assert ended[0] == 0 and ended[-1] == 1
    assert_targets_match(model)


def test_saves_before_and_after_the_end_reload_and_resume(tmp_path, model_class):
    model = make_model(model_class=model_class, pruning_end=END)
    model.learn(END - 50)
    model.save(tmp_path / "before")
    model.save_replay_buffer(tmp_path / "buffer")

    resumed = model_class.load(tmp_path / "before", env=gym.make("Pendulum-v1"), device="cpu")
    resumed.load_replay_buffer(tmp_path / "buffer")
    assert not resumed.pruning_ended and resumed.pruning_schedule.end == END
    resumed.learn(150, reset_num_timesteps=False)  # crosses the end
    assert resumed.pruning_ended and resumed.num_timesteps == END + 100
    shapes = units(resumed)
    obs = observations()
    expected, _ = resumed.predict(obs, deterministic=True)
    resumed.save(tmp_path / "after")

    folded = model_class.load(tmp_path / "after", env=gym.make("Pendulum-v1"), device="cpu")
    assert folded.pruning_ended and folded.policy.gates == "none"
    assert not folded.policy.actor.latent_pi.gates()
    assert units(folded) == shapes
    np.testing.assert_allclose(folded.predict(obs, deterministic=True)[0], expected, atol=1e-6)
    folded.load_replay_buffer(tmp_path / "buffer")
    folded.learn(50, reset_num_timesteps=False)  # trains on as plain OFENet-SAC at the pruned widths
    assert units(folded) == shapes


@pytest.mark.parametrize(("kwargs", "name"), [(dict(pruning_end=100), "pruning_end"), (dict(pruning_end=-1), "pruning_end")])
def test_bad_pruning_end(kwargs, name):
    with pytest.raises(ValueError, match=name):
        make_model(**kwargs)


OLD_SAVE = Path(__file__).with_name("data") / "xinet_tqc_time_mid_pruning.zip"


def test_a_save_of_flat_attributes_loads_mid_pruning_and_continues():
    """A save of version 0.x before the schedule and the regularizer were objects (flat ``pruning_start``,
    ``cost_weight``, ``loss_scales`` ... attributes), made mid-pruning by XiNetTQC with the time cost at step 260,
    without ``pruning_end`` (as before pruning had an end) and with non-fused optimizer groups: it loads with its
    schedule (the default end after its start), its regularizer (settings and C0; its loss scales, loss values, are
    measured afresh as gradient scales), its pruned widths
    and the policy's optimizer settings, and goes on pruning and folds at the end it was given."""
    loaded = XiNetTQC.load(OLD_SAVE, env=gym.make("Pendulum-v1"), device="cpu")
    schedule, regularizer = loaded.pruning_schedule, loaded.regularizer
    assert (schedule.start, schedule.freq, schedule.end) == (150, 25, 150 + 80_000)
    assert (regularizer.cost_weight, regularizer.cost_model, regularizer.loss_scale_window) == (20.0, "time", 100)
    assert regularizer.time_calibration.per_layer == 4e-6
    assert regularizer.initial_cost == pytest.approx(0.001408080104738474)
    assert {name: scale.count for name, scale in regularizer.gradient_scales.items()} == dict.fromkeys(
        ["aux", "actor", "critic0", "critic1"], 0
    )
    assert not {"pruning_start", "cost_weight", "loss_scales", "cost_active", "initial_expected_time"} & set(vars(loaded))
    assert units(loaded)[("ofenet.state", 1)] == 7 and loaded.num_timesteps == 260
    assert all(group["fused"] for optimizer in loaded.policy.optimizers() for group in optimizer.param_groups)
    before = loaded.pruning_summary().units
    loaded.pruning_schedule = schedule.replace(end=400)
    loaded.learn(200, reset_num_timesteps=False)
    assert loaded.pruning_ended and loaded.pruning_summary().units <= before
    assert all(scale.count > 0 for scale in loaded.regularizer.gradient_scales.values())


def test_load_arguments_change_the_schedule_and_the_regularizer(tmp_path):
    """As in SB3, keyword arguments of ``load`` set attributes: the XiNet arguments reach their owners."""
    make_model(pruning_start=200).save(tmp_path / "model")
    loaded = XiNetSAC.load(tmp_path / "model", device="cpu", pruning_end=900, cost_weight=0.5)
    assert (loaded.pruning_schedule.start, loaded.pruning_schedule.end) == (200, 900)
    assert loaded.regularizer.cost_weight == 0.5 and loaded.regularizer.initial_cost > 0
