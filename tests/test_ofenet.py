"""OFENet: sizes, the BatchNorm mode split, the action gradient, depth pruning, rebuilds and bad input."""

import copy
import pickle

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from torch import nn

from sb3_xinet.cost import count_parameters
from sb3_xinet.nets import GatedDenseNet, GatedMLP
from sb3_xinet.ofenet import OFENet


def batch(net: OFENet, n: int = 32) -> tuple[th.Tensor, th.Tensor, th.Tensor]:
    return th.randn(n, net.obs_dim), th.randn(n, net.action_dim), th.randn(n, net.obs_dim)


def test_hopper_sizes_match_the_original_ofenet():
    """Hopper-v5: 11-dim observations, 3-dim actions, 6 x 40 units per branch (ofenet.md §1.3)."""
    env = gym.make("Hopper-v5")
    net = OFENet.from_spaces(env.observation_space, env.action_space)
    assert (net.state_features_dim, net.state_action_features_dim) == (251, 494)
    assert count_parameters([net]) == 118_485
    assert net.expected_cost()[0].item() == 118_485


def test_rl_passes_leave_batch_norm_and_weights_alone_and_ignore_train_mode():
    net = OFENet(5, 2, [4, 4], [4, 4])
    obs, actions, next_obs = batch(net)
    net.aux_loss(obs, actions, next_obs).backward()  # running statistics move away from their init
    before = copy.deepcopy(net.state_dict())
    for training in (True, False):
        net.train(training)
        first = net.phi_sa(obs, actions)
        second = net.phi_sa(obs, actions)
        th.testing.assert_close(first, second)
        net.phi_s(obs)
    for key, value in net.state_dict().items():
        assert th.equal(value, before[key]), key


def test_aux_pass_uses_batch_statistics_and_updates_running_ones():
    net = OFENet(5, 2, [4], [4])
    obs, actions, next_obs = batch(net)
    running_mean = net.state.layers[0].bn.running_mean.clone()
    net.eval()  # the aux pass does not depend on the module's train flag either
    losses = net.aux_loss(obs, actions, next_obs, reduction="none")
    assert losses.shape == (32,)
    assert not th.equal(net.state.layers[0].bn.running_mean, running_mean)


def test_phi_sa_is_differentiable_with_respect_to_the_action():
    net = OFENet(5, 2, [4, 4], [4, 4])
    obs = th.randn(8, 5)
    actions = th.randn(8, 2, requires_grad=True)
    net.phi_sa(obs, actions)[:, -1].sum().backward()  # a column of the last state-action layer
    assert actions.grad is not None and actions.grad.abs().sum() > 0


def test_target_dim_predicts_a_prefix_of_the_next_observation():
    net = OFENet(6, 2, [4], [4], target_dim=3)
    obs, actions, next_obs = batch(net)
    assert net.predict_next(obs, actions).shape == (32, 3)
    assert th.isfinite(net.aux_loss(obs, actions, next_obs))


def test_depth_pruning_removes_the_layer_and_its_kernel_calls():
    net = OFENet(5, 2, [3, 3, 3], [3, 3])
    consumer = nn.Linear(net.state_features_dim, 4)
    net.register_consumer("state", consumer)
    with th.no_grad():
        net.state.layers[1].gate.theta.zero_()
        net.state_action.layers[0].gate.theta[:2] = 0.0
    removed = net.prune(threshold=1e-3)
    assert removed == {"state": {1: [0, 1, 2]}, "state_action": {0: [0, 1]}}
    assert net.state.layer_ids == [0, 2] and net.state.units == [3, 3]
    assert net.state_action.units == [1, 3]
    assert sum(isinstance(m, nn.Linear) for m in net.modules()) == 2 + 2 + 1
    assert consumer.in_features == net.state_features_dim == 5 + 6
    # a fully pruned branch passes its input through
    for layer_id in list(net.state_action.layer_ids):
        net.remove_units("state_action", layer_id, list(range(net.state_action.units[0])))
    obs, actions, _ = batch(net)
    th.testing.assert_close(net.phi_sa(obs, actions), th.cat([net.phi_s(obs), actions], dim=1))


def test_pruned_architecture_rebuilds_and_loads_strictly():
    net = OFENet(5, 2, [3, 3, 3], [3, 3])
    with th.no_grad():
        net.state.layers[0].gate.theta[1] = 0.0
        net.state.layers[2].gate.theta.zero_()
        net.state_action.layers[1].gate.theta[0] = 0.0
    net.prune(threshold=0.0)
    rebuilt = OFENet(5, 2, **net.architecture())
    rebuilt.load_state_dict(net.state_dict())  # strict
    obs, actions, _ = batch(net)
    th.testing.assert_close(rebuilt.phi_sa(obs, actions), net.phi_sa(obs, actions))
    assert net.architecture()["state_layer_ids"] == [0, 1]


def test_copies_and_pickles_carry_no_consumers():
    net = OFENet(5, 2, [3], [3])
    consumer = nn.Linear(net.state_action_features_dim, 1)
    net.register_consumer("state_action", consumer)
    twin = copy.deepcopy(net)
    restored = pickle.loads(pickle.dumps(net))
    assert twin.consumers("state_action") == [] and restored.consumers("state_action") == []
    twin.remove_units("state_action", 0, [0])
    assert consumer.in_features == net.state_action_features_dim  # the original's consumer is untouched
    net.remove_units("state_action", 0, [0])
    assert consumer.in_features == net.state_action_features_dim


def test_dense_baseline_has_no_gates():
    net = OFENet(5, 2, [3, 3], [3], gated=False)
    assert net.gate_parameters() == []
    assert net.expected_cost()[0].item() == count_parameters([net])
    assert net.prune(threshold=1.0) == {}


def aux_pass_at_half(net: OFENet) -> None:
    """An aux-loss pass with sampled gates, every theta at 0.5 (the gates' log-probability is then recorded)."""
    obs, actions, next_obs = batch(net)
    with th.no_grad():
        for theta in net.gate_parameters():
            theta.fill_(0.5)
    net.aux_loss(obs, actions, next_obs)


def test_reinforce_log_prob_covers_both_branches():
    net = OFENet(5, 2, [3], [3], estimator="reinforce")
    aux_pass_at_half(net)
    assert net.log_prob().shape == (32,)
    net.log_prob().sum().backward()
    assert all(theta.grad is not None for theta in net.gate_parameters())


def test_reinforce_log_prob_of_an_ofenet_whose_state_branch_is_gone():
    """Pruning can remove every layer of a branch; the other branch's gates still give the log-probability."""
    net = OFENet(5, 2, [3], [3], estimator="reinforce")
    net.remove_units("state", 0, [0, 1, 2])
    assert not net.state.gates()
    aux_pass_at_half(net)
    assert net.log_prob().shape == (32,)


@pytest.mark.parametrize(
    "observation_space, action_space, match",
    [
        (spaces.Box(0, 255, (8, 8, 3), np.uint8), spaces.Box(-1, 1, (2,)), "not images"),
        (spaces.Dict({"a": spaces.Box(-1, 1, (2,))}), spaces.Box(-1, 1, (2,)), "Flatten Dict observations"),
        (spaces.Box(-1, 1, (3,)), spaces.Discrete(2), "Box action"),
    ],
)
def test_unsupported_spaces_are_rejected(observation_space, action_space, match):
    with pytest.raises(ValueError, match=match):
        OFENet.from_spaces(observation_space, action_space)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(obs_dim=0, action_dim=2), "obs_dim"),
        (dict(obs_dim=3, action_dim=0), "action_dim"),
        (dict(obs_dim=3, action_dim=2, state_units=[0]), "units of each layer"),
        (dict(obs_dim=3, action_dim=2, state_units=[]), "at least one layer"),
        (dict(obs_dim=3, action_dim=2, state_action_units=[4, -1]), "units of each layer"),
        (dict(obs_dim=3, action_dim=2, state_units=[2.5]), "units of each layer"),
        (dict(obs_dim=3, action_dim=2, target_dim=4), "target_dim"),
    ],
)
def test_bad_sizes_are_rejected(kwargs, match):
    with pytest.raises(ValueError, match=match):
        OFENet(**kwargs)


def test_bad_sizes_of_the_blocks_are_rejected():
    with pytest.raises(ValueError, match="units of each layer"):
        GatedMLP(4, [8, 0])
    with pytest.raises(ValueError, match="at least one layer"):
        GatedDenseNet(4, [])
    with pytest.raises(ValueError, match="layer_ids"):
        GatedDenseNet(4, [2, 2], layer_ids=[0, 0])


def test_bad_removals_are_rejected_without_changing_the_network():
    net = OFENet(5, 2, [3, 3], [3])
    shapes = {key: value.shape for key, value in net.state_dict().items()}
    for args, match in [
        (("state", 0, [3]), "out of range"),
        (("state", 0, [-1]), "out of range"),
        (("state", 0, [1, 1]), "Duplicate"),
        (("state", 7, [0]), "No layer with id 7"),
        (("actor", 0, [0]), "Unknown OFENet branch"),
    ]:
        with pytest.raises(ValueError, match=match):
            net.remove_units(*args)
    assert {key: value.shape for key, value in net.state_dict().items()} == shapes
    with pytest.raises(ValueError, match="keep at least one"):
        GatedMLP(4, [2]).remove_units(0, [0, 1])


def test_wrong_inputs_and_consumers_are_rejected():
    net = OFENet(5, 2, [3], [3])
    with pytest.raises(ValueError, match=r"shape \(batch, 5\)"):
        net.phi_s(th.randn(4, 6))
    with pytest.raises(ValueError, match=r"shape \(batch, 5\)"):
        net.phi_s(th.randn(4, 5, 1))
    with pytest.raises(ValueError, match=r"actions of shape \(batch, 2\)"):
        net.phi_sa(th.randn(4, 5), th.randn(4, 3))
    with pytest.raises(ValueError, match="must read 8 inputs"):
        net.register_consumer("state", nn.Linear(7, 1))
    with pytest.raises(ValueError, match="Unknown OFENet feature"):
        net.register_consumer("action", nn.Linear(8, 1))
