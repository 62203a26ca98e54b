"""XiNetSAC end to end on Pendulum-v1 at tiny budgets: pruning inside learn(), save/load, resume, baselines."""

import itertools
import subprocess
import sys
import textwrap

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from stable_baselines3.common.evaluation import evaluate_policy

from sb3_xinet import XiNetPruningCallback, XiNetSAC
from sb3_xinet.cost import count_parameters

# Small networks and fast thetas so that a few hundred steps prune a clear share of the units
PRUNING = dict(
    learning_starts=100,
    ofenet_pretrain_steps=50,
    batch_size=32,
    pruning_start=150,
    prune_freq=25,
    cost_weight=20.0,
    loss_scale_window=100,
    policy_kwargs=dict(
        net_arch=[32, 32],
        ofenet_kwargs=dict(state_units=[8, 8, 8], state_action_units=[8, 8, 8]),
        theta_learning_rate=0.05,
    ),
    seed=0,
    device="cpu",
)
STEPS = 600


def make_model(env="Pendulum-v1", **overrides) -> XiNetSAC:
    return XiNetSAC("MlpPolicy", env, **{**PRUNING, **overrides})


def observations(n: int = 16) -> np.ndarray:
    return np.random.default_rng(1).uniform(-1, 1, size=(n, 3)).astype(np.float32)


def units(model: XiNetSAC) -> dict[tuple[str, int], int]:
    summary = model.pruning_summary()
    return {(layer.block, layer.layer): layer.units for network in summary.networks for layer in network.layers}


def assert_targets_match(model: XiNetSAC) -> None:
    critic, target = model.policy.critic.state_dict(), model.policy.critic_target.state_dict()
    assert critic.keys() == target.keys()
    for name, value in critic.items():
        assert value.shape == target[name].shape, name


@pytest.fixture(scope="module")
def pruned(tmp_path_factory):
    """A model trained with a strong cost weight, and its save file."""
    model = make_model().learn(STEPS)
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
    loaded = XiNetSAC.load(path, device="cpu")
    loaded_params = count_parameters(loaded.policy.networks().values())
    assert loaded_params == summary.params == loaded.pruning_summary().params
    assert loaded.pruning_summary().initial_params == summary.initial_params
    assert units(loaded) == units(model)


def test_zero_cost_removes_nothing():
    model = make_model(cost_weight=0.0).learn(STEPS)
    summary = model.pruning_summary()
    assert summary.params == summary.initial_params
    assert summary.units == summary.initial_units
    assert not model.cost_active


def test_target_critic_has_the_critics_shapes(pruned):
    model, path = pruned
    assert_targets_match(model)
    assert_targets_match(XiNetSAC.load(path, device="cpu"))


def test_reload_in_a_new_process_gives_the_same_deterministic_actions(pruned, tmp_path):
    model, path = pruned
    obs = observations()
    np.save(tmp_path / "obs.npy", obs)
    script = textwrap.dedent(
        f"""
        import numpy as np
        from sb3_xinet import XiNetSAC
        model = XiNetSAC.load({str(path)!r}, device="cpu")
        actions, _ = model.predict(np.load({str(tmp_path / "obs.npy")!r}), deterministic=True)
        np.save({str(tmp_path / "actions.npy")!r}, actions)
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True)
    expected, _ = model.predict(obs, deterministic=True)
    np.testing.assert_array_equal(np.load(tmp_path / "actions.npy"), expected)


def test_loaded_model_evaluates(pruned):
    _, path = pruned
    model = XiNetSAC.load(path, device="cpu")
    mean_reward, _ = evaluate_policy(model, gym.make("Pendulum-v1"), n_eval_episodes=1)
    assert np.isfinite(mean_reward)


class RecordUnits(XiNetPruningCallback):
    """The default pruning callback, also recording the units alive after every step."""

    def __init__(self) -> None:
        super().__init__()
        self.history: list[dict[tuple[str, int], int]] = []

    def _on_step(self) -> bool:
        result = super()._on_step()
        self.history.append(units(self.model))
        return result


def test_resume_mid_pruning_continues_and_no_unit_comes_back(tmp_path):
    model = make_model()
    model.learn(200)
    before = units(model)
    assert sum(before.values()) < model.pruning_summary().initial_units  # pruning has begun
    model.save(tmp_path / "mid")
    model.save_replay_buffer(tmp_path / "buffer")

    loaded = XiNetSAC.load(tmp_path / "mid", env=gym.make("Pendulum-v1"), device="cpu")
    loaded.load_replay_buffer(tmp_path / "buffer")
    assert loaded.replay_buffer.size() == model.replay_buffer.size()
    assert units(loaded) == before
    assert {name: scale.value for name, scale in loaded.loss_scales.items()} == {
        name: scale.value for name, scale in model.loss_scales.items()
    }
    recorder = RecordUnits()
    loaded.learn(400, callback=recorder, reset_num_timesteps=False)

    assert loaded.num_timesteps == 600
    history = [before, *recorder.history]
    for earlier, later in itertools.pairwise(history):
        assert all(later[layer] <= earlier[layer] for layer in earlier)
    assert sum(units(loaded).values()) < sum(before.values())  # pruning went on after the reload
    assert_targets_match(loaded)


def test_rl_passes_leave_ofenet_untouched(monkeypatch):
    """Acting, the critic, actor and target passes neither update BatchNorm statistics nor OFENet's weights."""
    model = make_model(pruning_start=0)
    model.learn(PRUNING["learning_starts"] + 10)
    ofenet = model.policy.ofenet
    snapshot = {name: value.clone() for name, value in ofenet.state_dict().items()}

    aux_step = model._aux_step
    monkeypatch.setattr(model, "_aux_step", lambda batch_size, cost_grads: 0.0)  # the only OFENet update
    model.predict(observations(), deterministic=False)
    model.policy.critic(th.as_tensor(observations()), th.zeros(16, 1))
    model.train(gradient_steps=5, batch_size=32)
    for name, value in ofenet.state_dict().items():
        assert th.equal(value, snapshot[name]), name

    aux_step(32, None)  # the aux step does change them: the check above can fail
    assert not th.equal(ofenet.state.layers[0].bn.running_mean, snapshot["state.layers.0.bn.running_mean"])
    assert not th.equal(ofenet.head.weight, snapshot["head.weight"])


def test_actor_loss_reaches_the_actor_through_phi_sa_of_the_action():
    """With the entropy term off, the actor's only gradient is dQ(phi_sa(s, a))/da * da/dtheta."""
    model = make_model(ent_coef=0.0, pruning_start=10**6)
    model.learn(PRUNING["learning_starts"] + 10)
    model.train(gradient_steps=1, batch_size=32)
    grads = [param.grad for param in model.policy.actor.parameters() if param.grad is not None]
    assert grads and sum(float(grad.abs().sum()) for grad in grads) > 0


def test_a_deleted_layer_leaves_the_optimizers_and_the_save_loads(tmp_path):
    """Removing every unit of an OFENet layer deletes it; its parameters leave the optimizers, so the save
    (optimizer states included) loads into the rebuilt pruned shapes."""
    model = make_model()
    with th.no_grad():
        model.policy.ofenet.state.layers[0].gate.theta.zero_()
    model.prune()
    assert model.policy.ofenet.state.layer_ids == [1, 2]
    ofenet_params = {id(param) for param in model.policy.ofenet.parameters()}
    in_optimizer = [param for group in model.policy.ofenet_optimizer.param_groups for param in group["params"]]
    assert {id(param) for param in in_optimizer} == ofenet_params
    model.learn(PRUNING["learning_starts"] + 10)  # the optimizers step with the remaining parameters
    model.save(tmp_path / "model")
    loaded = XiNetSAC.load(tmp_path / "model", device="cpu")
    assert loaded.policy.ofenet.state.layer_ids == [1, 2]
    sizes = [len(group["params"]) for group in loaded.policy.ofenet_optimizer.param_groups]
    assert sizes == [len(group["params"]) for group in model.policy.ofenet_optimizer.param_groups]
