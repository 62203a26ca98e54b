"""Physical removal computes exactly what the network computed with those units' xi forced to 0."""

import warnings

import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from hypothesis import given, settings
from hypothesis import strategies as st

from sb3_xinet.cost import count_parameters
from sb3_xinet.policies import XiNetPolicy
from tests.helpers import System

widths = st.lists(st.integers(1, 5), min_size=1, max_size=3)


@st.composite
def systems_and_removals(draw, mlp_may_empty=False):
    system = System.build(
        obs_dim=draw(st.integers(1, 5)),
        action_dim=draw(st.integers(1, 3)),
        state_units=draw(widths),
        state_action_units=draw(widths),
        actor_units=draw(st.lists(st.integers(1, 4), min_size=1, max_size=2)),
        seed=draw(st.integers(0, 2**16)),
    )
    removal = {}
    for name, block in system.blocks().items():
        per_layer = {}
        for layer_id, n_units in zip(block.layer_ids, block.units, strict=True):
            # a DenseNet layer may lose every unit (and go); an MLP layer keeps at least one
            max_size = n_units if name != "actor" else n_units - 1
            units = draw(st.lists(st.integers(0, n_units - 1), unique=True, max_size=max_size))
            if units:
                per_layer[layer_id] = units
        removal[name] = per_layer
    return system, removal


def randomize_state(system: System) -> None:
    """Non-trivial BatchNorm statistics and affine parameters, thetas in (0, 1]."""
    with th.no_grad():
        for module in system.ofenet.modules():
            if isinstance(module, th.nn.BatchNorm1d):
                module.running_mean.normal_()
                module.running_var.uniform_(0.5, 2.0)
                module.weight.normal_()
                module.bias.normal_()
        for theta in system.thetas():
            theta.uniform_(0.05, 1.0)


@settings(max_examples=60, deadline=None)
@given(systems_and_removals(), st.booleans())
def test_removal_equals_gating_off(case, batch_stats):
    """Through OFENet, its aux head and downstream consumers; BN with running or with batch statistics."""
    system, removal = case
    randomize_state(system)
    if batch_stats:
        # sampled gates must be deterministic for a comparison: theta in {0, 1}
        with th.no_grad():
            for theta in system.thetas():
                theta.fill_(1.0)
    system.gate_off(removal)
    obs = th.randn(16, system.ofenet.obs_dim)
    actions = th.randn(16, system.ofenet.action_dim)
    gated = system.clone()
    expected = gated.outputs(obs, actions, stochastic=batch_stats, batch_stats=batch_stats)

    n_layers_before = len(system.ofenet.state.layers) + len(system.ofenet.state_action.layers)
    system.remove(removal)
    got = system.outputs(obs, actions, stochastic=batch_stats, batch_stats=batch_stats)
    for want, have in zip(expected, got, strict=True):
        th.testing.assert_close(have, want, atol=1e-5, rtol=1e-5)

    # the removed units are gone from the shapes, and emptied DenseNet layers are gone entirely
    emptied = sum(
        len(units) == n
        for name in ("state", "state_action")
        for layer_id, units in removal[name].items()
        for n in [gated.blocks()[name].units[gated.blocks()[name].layer_ids.index(layer_id)]]
    )
    assert len(system.ofenet.state.layers) + len(system.ofenet.state_action.layers) == n_layers_before - emptied
    n_removed = sum(len(units) for per_layer in removal.values() for units in per_layer.values())
    assert sum(t.numel() for t in system.thetas()) == sum(t.numel() for t in gated.thetas()) - n_removed
    if batch_stats:  # the running statistics of surviving channels were updated identically
        for branch in ("state", "state_action"):
            survivors = system.blocks()[branch]
            for layer_id, layer in zip(survivors.layer_ids, survivors.layers, strict=True):
                twin = gated.blocks()[branch].layers[gated.blocks()[branch].layer_ids.index(layer_id)]
                kept = [i for i in range(twin.n_units) if i not in removal[branch].get(layer_id, [])]
                th.testing.assert_close(layer.bn.running_mean, twin.bn.running_mean[kept])


@settings(max_examples=40, deadline=None)
@given(systems_and_removals())
def test_expected_params_at_binary_theta_counts_compacted_network(case):
    """P(theta) at theta in {0,1} is the parameter count after removing the zero units, and dP/dtheta_j is
    what unit j keeps alive: the count drops by exactly that much when j is removed too."""
    system, removal = case
    system.gate_off(removal)
    p_gated = system.expected_params()
    compacted = system.clone()
    compacted.remove(removal)
    assert p_gated.item() == pytest.approx(count_parameters(compacted.modules()))
    assert compacted.expected_params().item() == pytest.approx(count_parameters(compacted.modules()))

    p = compacted.expected_params()
    thetas = compacted.thetas()
    grads = th.autograd.grad(p, thetas)
    names = [(name, layer_id) for name, block in compacted.blocks().items() for layer_id in block.layer_ids]
    for (name, layer_id), grad in zip(names, grads, strict=True):
        block = compacted.blocks()[name]
        n_units = block.units[block.layer_ids.index(layer_id)]
        if name == "actor" and n_units == 1:
            continue  # an MLP layer cannot lose its last unit
        smaller = compacted.clone()
        smaller.remove({name: {layer_id: [n_units - 1]}})
        kept_alive = count_parameters(compacted.modules()) - count_parameters(smaller.modules())
        assert grad[-1].item() == pytest.approx(kept_alive)


@st.composite
def policies_with_binary_thetas(draw):
    """A small XiNetPolicy whose head thetas are 0 or 1, with whole hidden layers at 0 drawn often."""
    policy = XiNetPolicy(
        spaces.Box(-1, 1, (draw(st.integers(1, 4)),)),
        spaces.Box(-1, 1, (draw(st.integers(1, 2)),)),
        lambda _: 3e-4,
        net_arch=dict(
            pi=draw(st.lists(st.integers(1, 4), min_size=1, max_size=2)),
            qf=draw(st.lists(st.integers(1, 4), min_size=1, max_size=2)),
        ),
        ofenet_kwargs=dict(state_units=draw(widths), state_action_units=draw(widths)),
    )
    th.manual_seed(draw(st.integers(0, 2**16)))
    with th.no_grad():
        for entry in policy.heads():
            for module in [*entry.block.modules(), *(entry.target.modules() if entry.target is not None else [])]:
                if isinstance(module, th.nn.Linear):  # every ReLU unit active: only the gates could make a constant
                    module.bias.fill_(1.0)
        for block in policy.gated_blocks().values():
            for gate in block.gates():
                mode = draw(st.sampled_from(["zero", "one", "mixed"]))
                gate.theta.copy_(
                    {"zero": th.zeros, "one": th.ones}[mode](gate.n_units)
                    if mode != "mixed"
                    else th.tensor(draw(st.lists(st.sampled_from([0.0, 1.0]), min_size=gate.n_units, max_size=gate.n_units)))
                )
    return policy


@settings(max_examples=60, deadline=None, derandomize=True)
@given(policies_with_binary_thetas())
def test_pruning_never_empties_a_head_and_p_counts_what_is_left(policy):
    """Hidden layers of the actor and the critics switched off entirely: pruning keeps one unit of each, with
    theta 1, so P(theta) is the parameter count of the networks left, no head computes a constant, and the
    user is warned, by network name."""
    emptied = {entry.name for entry in policy.heads() if any(float(g.theta.sum()) == 0 for g in entry.block.gates())}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        policy.prune(1e-3)
    warned = " ".join(str(warning.message) for warning in caught)
    assert all(f"every unit of {name} layer" in warned for name in emptied)

    assert policy.expected_params().item() == pytest.approx(count_parameters(policy.networks().values()))
    for entry in policy.heads():
        assert all(float(gate.theta.sum()) >= 1.0 for gate in entry.block.gates())
    obs = th.as_tensor(np.random.default_rng(0).uniform(-1, 1, (256, policy.ofenet.obs_dim)), dtype=th.float32)
    actions = th.as_tensor(np.random.default_rng(1).uniform(-1, 1, (256, policy.ofenet.action_dim)), dtype=th.float32)
    policy.set_training_mode(False)
    with th.no_grad():
        assert policy.actor(obs, deterministic=True).std(dim=0).min() > 0
        for critic in (policy.critic, policy.critic_target):
            assert all(q.std() > 0 for q in critic(obs, actions))
