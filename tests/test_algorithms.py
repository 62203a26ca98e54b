"""XiNetSAC and XiNetTQC end to end on Pendulum-v1 at tiny budgets: pruning inside learn(), save/load, resume.

The tests that take the ``model_class`` fixture run once per algorithm (``MODEL_LIST`` in tests/helpers.py)."""

import itertools
import subprocess
import sys
import textwrap

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from sb3_contrib.common.utils import quantile_huber_loss
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.utils import polyak_update

from sb3_xinet import XiNetPruningCallback, XiNetSAC, XiNetTQC
from sb3_xinet.blocks import BlockEntry
from sb3_xinet.common.algorithm import XiNetAlgorithm
from sb3_xinet.cost import count_parameters
from tests.helpers import MODEL_LIST, PRUNING, STEPS, assert_targets_match, make_model, observations, units


@pytest.fixture(scope="module", params=MODEL_LIST, ids=[cls.__name__ for cls in MODEL_LIST])
def pruned(request, tmp_path_factory):
    """A model of each algorithm trained with a strong cost weight, and its save file."""
    model = make_model(model_class=request.param).learn(STEPS)
    path = tmp_path_factory.mktemp("pruned") / "model.zip"
    model.save(path)
    return model, path


def test_strong_cost_prunes_and_the_save_is_smaller(pruned):
    model, path = pruned
    summary = model.pruning_summary()
    assert summary.params < 0.7 * summary.initial_params
    assert summary.units < 0.7 * summary.initial_units
    for network in summary.networks:
        assert network.params < network.initial_params, network.name
    loaded = type(model).load(path, device="cpu")
    loaded_params = count_parameters(loaded.policy.networks().values())
    assert loaded_params == summary.params == loaded.pruning_summary().params
    assert loaded.pruning_summary().initial_params == summary.initial_params
    assert units(loaded) == units(model)


def test_zero_cost_removes_nothing(model_class):
    model = make_model(model_class=model_class, cost_weight=0.0).learn(STEPS)
    summary = model.pruning_summary()
    assert summary.params == summary.initial_params
    assert summary.units == summary.initial_units
    assert not model.regularizer.enabled and not model.regularizer.active


def test_target_critic_has_the_critics_shapes(pruned):
    model, path = pruned
    assert_targets_match(model)
    assert_targets_match(type(model).load(path, device="cpu"))


@pytest.mark.slow
def test_reload_in_a_new_process_gives_the_same_deterministic_actions(pruned, tmp_path):
    model, path = pruned
    obs = observations()
    np.save(tmp_path / "obs.npy", obs)
    script = textwrap.dedent(
        f"""
        import numpy as np
        from sb3_xinet import {type(model).__name__} as Algorithm
        model = Algorithm.load({str(path)!r}, device="cpu")
        actions, _ = model.predict(np.load({str(tmp_path / "obs.npy")!r}), deterministic=True)
        np.save({str(tmp_path / "actions.npy")!r}, actions)
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True)
    expected, _ = model.predict(obs, deterministic=True)
    np.testing.assert_array_equal(np.load(tmp_path / "actions.npy"), expected)


def test_loaded_model_evaluates(pruned):
    model, path = pruned
    model = type(model).load(path, device="cpu")
    mean_reward, _ = evaluate_policy(model, gym.make("Pendulum-v1"), n_eval_episodes=1)
    assert np.isfinite(mean_reward)


def test_the_policy_state_dict_holds_floats_and_loads_counters_of_older_saves(pruned):
    """SB3's policy tests randomize every state-dict entry with ``th.rand_like`` (floats only); BatchNorm's step
    counter is not kept, and a state dict that still has it (saved before) loads, with or without its version."""
    model, _ = pruned
    state = model.policy.state_dict()
    assert all(value.is_floating_point() for value in state.values())
    bn_prefixes = {key.rsplit(".", 1)[0] for key in state if key.endswith(".running_var")}
    assert bn_prefixes
    older = {**{f"{prefix}.num_batches_tracked": th.tensor(7) for prefix in bn_prefixes}, **state}
    before, _ = model.predict(observations(), deterministic=True)
    model.policy.load_state_dict(older)
    model.policy.load_state_dict({key: value + 0 for key, value in older.items()})  # a plain dict: no version
    after, _ = model.predict(observations(), deterministic=True)
    np.testing.assert_array_equal(after, before)


class RecordUnits(XiNetPruningCallback):
    """The default pruning callback, also recording the units alive after every step."""

    def __init__(self) -> None:
        super().__init__()
        self.history: list[dict[tuple[str, int], int]] = []

    def _on_step(self) -> bool:
        result = super()._on_step()
        self.history.append(units(self.model))
        return result


def test_resume_mid_pruning_continues_and_no_unit_comes_back(tmp_path, model_class):
    model = make_model(model_class=model_class)
    model.learn(200)
    before = units(model)
    assert sum(before.values()) < model.pruning_summary().initial_units  # pruning has begun
    model.save(tmp_path / "mid")
    model.save_replay_buffer(tmp_path / "buffer")

    loaded = model_class.load(tmp_path / "mid", env=gym.make("Pendulum-v1"), device="cpu")
    loaded.load_replay_buffer(tmp_path / "buffer")
    assert loaded.replay_buffer.size() == model.replay_buffer.size()
    assert units(loaded) == before
    saved_scales = {name: (scale.count, scale.value) for name, scale in model.regularizer.gradient_scales.items()}
    assert all(count > 0 for count, _ in saved_scales.values())
    assert {name: (scale.count, scale.value) for name, scale in loaded.regularizer.gradient_scales.items()} == saved_scales
    recorder = RecordUnits()
    loaded.learn(400, callback=recorder, reset_num_timesteps=False)

    assert loaded.num_timesteps == 600
    history = [before, *recorder.history]
    for earlier, later in itertools.pairwise(history):
        assert all(later[layer] <= earlier[layer] for layer in earlier)
    assert sum(units(loaded).values()) < sum(before.values())  # pruning went on after the reload
    assert_targets_match(loaded)


def test_rl_passes_leave_ofenet_untouched(monkeypatch, model_class):
    """Acting, the critic, actor and target passes neither update BatchNorm statistics nor OFENet's weights."""
    model = make_model(model_class=model_class, pruning_start=0)
    model.learn(PRUNING["learning_starts"] + 10)
    ofenet = model.policy.ofenet
    snapshot = {name: value.clone() for name, value in ofenet.state_dict().items()}

    aux_step = model._aux_step  # the only OFENet update
    obs = th.as_tensor(observations())
    monkeypatch.setattr(model, "_aux_step", lambda batch_size, cost_grads: th.zeros(()))
    model.predict(observations(), deterministic=False)
    model.policy.critic(obs, th.zeros(16, 1))
    model.train(gradient_steps=5, batch_size=32)
    for name, value in ofenet.state_dict().items():
        assert th.equal(value, snapshot[name]), name

    aux_step(32, None)  # the aux step does change them: the check above can fail
    assert not th.equal(ofenet.state.layers[0].bn.running_mean, snapshot["state.layers.0.bn.running_mean"])
    assert not th.equal(ofenet.head.weight, snapshot["head.weight"])


def test_actor_loss_reaches_the_actor_through_phi_sa_of_the_action(model_class):
    """With the entropy term off, the actor's only gradient is dQ(phi_sa(s, a))/da * da/dtheta."""
    model = make_model(model_class=model_class, ent_coef=0.0, pruning_start=None)
    model.learn(PRUNING["learning_starts"] + 10)
    model.train(gradient_steps=1, batch_size=32)
    grads = [param.grad for param in model.policy.actor.parameters() if param.grad is not None]
    assert grads and sum(float(grad.abs().sum()) for grad in grads) > 0


def test_a_deleted_layer_leaves_the_optimizers_and_the_save_loads(tmp_path, model_class):
    """Removing every unit of an OFENet layer deletes it; its parameters leave the optimizers, so the save
    (optimizer states included) loads into the rebuilt pruned shapes."""
    model = make_model(model_class=model_class)
    with th.no_grad():
        model.policy.ofenet.state.layers[0].gate.theta.zero_()
    model.prune()
    assert model.policy.ofenet.state.layer_ids == [1, 2]
    ofenet_params = {id(param) for param in model.policy.ofenet.parameters()}
    in_optimizer = [param for group in model.policy.ofenet_optimizer.param_groups for param in group["params"]]
    assert {id(param) for param in in_optimizer} == ofenet_params
    model.learn(PRUNING["learning_starts"] + 10)  # the optimizers step with the remaining parameters
    model.save(tmp_path / "model")
    loaded = model_class.load(tmp_path / "model", device="cpu")
    assert loaded.policy.ofenet.state.layer_ids == [1, 2]
    sizes = [len(group["params"]) for group in loaded.policy.ofenet_optimizer.param_groups]
    assert sizes == [len(group["params"]) for group in model.policy.ofenet_optimizer.param_groups]


def heads_vary(model: XiNetAlgorithm) -> None:
    """The deterministic action and every critic's and target critic's Q-value vary over states."""
    obs = th.as_tensor(observations(256))
    actions = th.as_tensor(np.random.default_rng(2).uniform(-2, 2, size=(256, 1)), dtype=th.float32)
    model.policy.set_training_mode(False)
    with th.no_grad():
        assert model.policy.actor(obs, deterministic=True).std() > 0
        for critic in (model.policy.critic, model.policy.critic_target):
            assert all(q.std() > 0 for q in critic(obs, actions))


def test_a_cost_weight_that_would_empty_a_head_warns_and_leaves_it_working():
    """At c = 400 the critics' layers would lose every unit (their Q-values a constant): each layer keeps one,
    the user is told which, and the summary reports exactly the networks that are there."""
    with pytest.warns(UserWarning, match="every unit of critic0 layer") as caught:
        model = make_model(cost_weight=400.0).learn(STEPS)
    assert all("smaller cost_weight" in str(warning.message) for warning in caught if "every unit" in str(warning.message))
    heads_vary(model)
    for entry in model.policy.heads():
        assert all(float(gate.theta.sum()) >= 1.0 - 1e-5 for gate in entry.block.gates()), entry.name
    summary = model.pruning_summary()
    assert summary.params == count_parameters(model.policy.networks().values())
    for network in summary.networks:
        for layer in network.layers:
            block = model.policy.gated_blocks()[layer.block]
            alive = dict(zip(block.layer_ids, block.units, strict=True))
            assert layer.units == alive.get(layer.layer, 0)


class RecordTargetQ(XiNetPruningCallback):
    """The default pruning callback, also recording the target critics' Q-values on a fixed batch around every
    removal."""

    def __init__(self) -> None:
        super().__init__()
        self.changes: list[float] = []

    def target_q(self) -> th.Tensor:
        z_sa = self.model.policy.ofenet.phi_sa(th.as_tensor(observations(64)), th.zeros(64, 1))
        return th.cat(self.model.policy.critic_target.q_values(z_sa, stochastic=False), dim=1)

    def _prune(self) -> None:
        with th.no_grad():
            before = self.target_q()
            n_before = len(self.removals)
            super()._prune()
            removed = self.removals[-1][1] if len(self.removals) > n_before else {}
            if any(BlockEntry.role_of(name) == "critic" for name in removed):
                self.changes.append(float(((self.target_q() - before).abs() / before.abs().clamp(min=1.0)).max()))


def test_removals_leave_the_target_critics_unchanged(model_class):
    """A target critic gates its units with its critic's thetas, so a unit leaves it when it has stopped
    counting there too: the target Q-values (quantiles) do not move (they moved by up to 1.6 when the targets'
    thetas were Polyak-averaged)."""
    recorder = RecordTargetQ()
    make_model(model_class=model_class, cost_weight=200.0).learn(STEPS, callback=recorder)  # critics lose units often
    assert len(recorder.changes) >= 3
    # a removed unit's theta is at most the threshold (1e-3), so it moved the targets by that share of its value
    assert max(recorder.changes) <= 1e-3


def test_the_loss_scales_hold_only_the_pruning_phases_gradients(model_class):
    """Neither OFENet's pre-training nor the warm-up's RL steps enter the scales (their early gradients would inflate
    them): each scale holds one update per gradient step with the regularizer on."""
    model = make_model(model_class=model_class, pruning_start=PRUNING["learning_starts"] + 20, prune_freq=10**6)
    model.learn(PRUNING["learning_starts"] + 19)
    assert model._n_updates > 0 and model.ofenet_pretrained
    assert all(scale.count == 0 for scale in model.regularizer.gradient_scales.values())
    model.learn(10, reset_num_timesteps=False)
    assert {scale.count for scale in model.regularizer.gradient_scales.values()} == {10}


def test_with_n_step_returns_ofenet_predicts_the_next_observation(model_class):
    """SB3's n-step replay buffer returns the observation n steps ahead; OFENet's targets stay one step ahead."""
    model = make_model(model_class=model_class, n_steps=3, pruning_start=None)
    seen: list[tuple[th.Tensor, th.Tensor]] = []
    aux_loss = model.policy.ofenet.aux_loss

    def recording_aux_loss(obs, actions, next_obs, reduction="mean"):
        seen.append((obs.clone(), next_obs.clone()))
        return aux_loss(obs, actions, next_obs, reduction)

    model.policy.ofenet.aux_loss = recording_aux_loss
    model.learn(PRUNING["learning_starts"] + 5)
    buffer = model.replay_buffer
    size = buffer.size()
    stored = {
        obs.tobytes(): next_obs.tobytes()
        for obs, next_obs in zip(buffer.observations[:size, 0], buffer.next_observations[:size, 0], strict=True)
    }
    pairs = [(o.numpy().tobytes(), n.numpy().tobytes()) for obs, next_obs in seen for o, n in zip(obs, next_obs, strict=True)]
    assert len(pairs) > 1000
    assert all(stored[o] == n for o, n in pairs)


def test_each_loss_scale_is_its_own_thetas_task_gradient(model_class):
    """One scale per critic, the actor and OFENet, each the mean squared task gradient of its own thetas (read
    before the cost gradient is added): a critic whose output reads none of its units gets none, the other one
    does; an actor whose outputs read none of its units gets none."""
    model = make_model(model_class=model_class, pruning_start=PRUNING["learning_starts"], prune_freq=10**6)
    model.learn(PRUNING["learning_starts"] + 5)
    with th.no_grad():
        model.critic.q_networks[1].out.weight.zero_()
        model.actor.mu.weight.zero_()
        model.actor.log_std.weight.zero_()
    model.lr_schedule = lambda _: 0.0  # the actor's and the critics' weights stay as set
    scales = model.regularizer.gradient_scales
    assert set(scales) == {"aux", "actor", "critic0", "critic1"}
    for scale in scales.values():
        scale.count, scale.value = 0, 0.0
    model.train(gradient_steps=2, batch_size=32)
    assert all(scale.count == 2 for scale in scales.values())
    assert scales["critic0"].value > 0.0 and scales["aux"].value > 0.0
    assert scales["critic1"].value == 0.0 and scales["actor"].value == 0.0


def test_tqc_losses_are_sb3_contribs():
    """XiNetTQC's target and critic loss are sb3-contrib TQC's (``TQC.train``) on the same critic outputs; the
    actor maximises the mean quantile."""
    model = make_model(model_class=XiNetTQC, top_quantiles_to_drop_per_net=3)
    generator = th.Generator().manual_seed(0)
    batch, n_critics, n_quantiles = 16, 2, model.policy.n_quantiles
    next_values = tuple(th.randn(batch, n_quantiles, generator=generator) for _ in range(n_critics))
    values = tuple(th.randn(batch, n_quantiles, generator=generator) for _ in range(n_critics))
    next_log_prob, rewards = th.randn(batch, 1, generator=generator), th.randn(batch, 1, generator=generator)
    dones = (th.rand(batch, 1, generator=generator) < 0.3).float()
    ent_coef, gamma = th.tensor([0.2]), 0.99
    # sb3-contrib's TQC.train, with its critics' outputs stacked (batch, n_critics, n_quantiles)
    next_quantiles, _ = th.sort(th.stack(next_values, dim=1).reshape(batch, -1))
    next_quantiles = next_quantiles[:, : n_critics * n_quantiles - 3 * n_critics]
    target_quantiles = rewards + (1 - dones) * gamma * (next_quantiles - ent_coef * next_log_prob)
    expected_loss = quantile_huber_loss(th.stack(values, dim=1), target_quantiles.unsqueeze(1), sum_over_quantiles=False)

    target = rewards + (1 - dones) * gamma * (model._next_value(next_values) - ent_coef * next_log_prob)
    th.testing.assert_close(target, target_quantiles)
    losses = model._critic_losses(values, target)
    assert losses.shape == (n_critics, batch)
    th.testing.assert_close(losses.mean(dim=1).sum(), expected_loss)
    th.testing.assert_close(model._actor_value(values), th.stack(values, dim=1).mean(dim=2).mean(dim=1, keepdim=True))


def test_tqc_checks_its_quantiles_and_tells_its_saves_apart(tmp_path):
    with pytest.raises(ValueError, match="top_quantiles_to_drop_per_net"):
        make_model(model_class=XiNetTQC, policy_kwargs={**PRUNING["policy_kwargs"], "n_quantiles": 2})
    with pytest.raises(ValueError, match="n_quantiles"):
        make_model(model_class=XiNetTQC, policy_kwargs={**PRUNING["policy_kwargs"], "n_quantiles": 0})
    make_model(model_class=XiNetTQC).save(tmp_path / "tqc")
    make_model().save(tmp_path / "sac")
    with pytest.raises(ValueError, match="not a XiNetSAC save: its policy class is XiNetTQCPolicy"):
        XiNetSAC.load(tmp_path / "tqc")
    with pytest.raises(ValueError, match="not a XiNetTQC save: its policy class is XiNetPolicy"):
        XiNetTQC.load(tmp_path / "sac")


def test_target_critics_read_their_critics_thetas_and_freeze_them(model_class):
    """The targets' thetas are copies of their critics' (no gradient: a frozen gate at 1 is the identity); they
    follow every step of the critics' thetas, so with the critics' weights the targets give the critics' Q."""
    model = make_model(model_class=model_class, pruning_start=None).learn(PRUNING["learning_starts"] + 20)
    model.regularizer.switch(True)  # the regularizer's phase, from the training step alone (no removal in between)
    model.train(gradient_steps=20, batch_size=32)
    weights, thetas, target_weights, target_thetas = model.policy.critic_parameters()
    assert not any(theta.requires_grad for theta in target_thetas)
    assert any(bool((theta < 1).any()) for theta in thetas)  # the regularizer has moved them
    polyak_update(weights, target_weights, 1.0)
    z_sa = th.randn(16, model.policy.ofenet.state_action_features_dim)
    with th.no_grad():
        values = model.policy.critic.q_values(z_sa, stochastic=False)
        target_values = model.policy.critic_target.q_values(z_sa, stochastic=False)
    for value, target_value in zip(values, target_values, strict=True):
        th.testing.assert_close(target_value, value)


def test_reinforce_weights_each_critics_gates_by_its_own_losses(model_class):
    """With REINFORCE gates, a critic's thetas learn from its own per-sample losses: changing another critic's
    losses leaves its gradient as it was."""
    policy_kwargs = {**PRUNING["policy_kwargs"], "gate_estimator": "reinforce"}
    model = make_model(model_class=model_class, policy_kwargs=policy_kwargs, pruning_start=0)
    model.learn(PRUNING["learning_starts"] + 5)
    step = model._start_training(32)
    assert step.reinforce
    for group in model.critic.optimizer.param_groups:
        group["lr"] = 0.0  # the critics' step leaves them as they are
    data = model.replay_buffer.sample(32)
    with th.no_grad():
        z_sa = model.policy.ofenet.phi_sa(model.policy.obs_to_float(data.observations), data.actions)

    def first_critics_theta_gradients() -> list[th.Tensor]:
        th.manual_seed(1)  # the same gate samples
        model._critic_step(z_sa, data.rewards, step, None)
        return [gate.theta.grad.clone() for gate in model.critic.q_networks[0].latent.gates()]

    before = first_critics_theta_gradients()
    with th.no_grad():
        model.critic.q_networks[1].out.bias.add_(10.0)
    for want, have in zip(before, first_critics_theta_gradients(), strict=True):
        th.testing.assert_close(have, want)
