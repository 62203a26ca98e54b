"""Optimizer-state surgery: after removal, Adam continues as if the units had been gated off."""

import copy

import torch as th
from hypothesis import given, settings

from sb3_xinet.regularizer import penalty_weight
from sb3_xinet.surgery import keep_index, scale_columns_, slice_parameter_
from tests.helpers import System
from tests.test_removal import systems_and_removals


def make_optimizer(system: System) -> th.optim.Adam:
    thetas = {id(theta) for theta in system.thetas()}
    weights = [p for module in system.modules() for p in module.parameters() if id(p) not in thetas]
    return th.optim.Adam([{"params": weights, "lr": 1e-2}, {"params": system.thetas(), "lr": 5e-2}])


def step(
    system: System, optimizer: th.optim.Optimizer, obs, actions, next_obs, p0: float, batch_stats=True, project=True
) -> None:
    """One aux + downstream step with the cost penalty, gates sampled, then (``project``) the projection."""
    prediction, action_out, q_value = system.outputs(obs, actions, stochastic=True, batch_stats=batch_stats)
    task = ((prediction - next_obs[:, : system.ofenet.target_dim]) ** 2).mean() + action_out.pow(2).mean() + q_value.mean()
    loss = task + penalty_weight(1.0, 0.5, p0) * system.expected_params()
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    for block in system.blocks().values():
        if project:
            block.project_()


@settings(max_examples=30, deadline=None)
@given(systems_and_removals())
def test_adam_step_after_surgery_matches_gated_network(case):
    system, removal = case
    obs, actions = th.randn(32, system.ofenet.obs_dim), th.randn(32, system.ofenet.action_dim)
    next_obs = th.randn(32, system.ofenet.obs_dim)
    p0 = system.expected_params().item()
    optimizer = make_optimizer(system)
    for _ in range(3):  # non-trivial Adam moments before the surgery
        step(system, optimizer, obs, actions, next_obs, p0)
    with th.no_grad():  # sampled gates must be deterministic for a comparison: theta in {0, 1}
        for theta in system.thetas():
            theta.fill_(1.0)
    system.gate_off(removal)

    compacted = system.clone()
    compacted_optimizer = make_optimizer(compacted)
    compacted_optimizer.load_state_dict(copy.deepcopy(optimizer.state_dict()))  # load_state_dict shares tensors
    compacted.remove(removal, [compacted_optimizer])

    # BN on running statistics for the compared step: with batch statistics the bias in front of BN has an
    # exactly-zero gradient, whose rounding noise Adam would blow up into lr-sized, order-dependent steps.
    # No projection after it: an MLP layer's projection keeps sum(theta) >= 1 over the units it has, and a
    # unit at theta 0 is one of them until it is removed (tests/test_gates.py tests the projection).
    step(system, optimizer, obs, actions, next_obs, p0, batch_stats=False, project=False)
    step(compacted, compacted_optimizer, obs, actions, next_obs, p0, batch_stats=False, project=False)

    # compact the gated network after its step: it must now equal the network compacted before the step
    system.remove(removal, [optimizer])
    want, have = system.ofenet.state_dict(), compacted.ofenet.state_dict()
    assert want.keys() == have.keys()
    for key in want:
        th.testing.assert_close(have[key], want[key], atol=1e-6, rtol=1e-5, msg=key)
    for module, twin in zip(system.modules()[1:], compacted.modules()[1:], strict=True):
        for (key, want_t), have_t in zip(module.state_dict().items(), twin.state_dict().values(), strict=True):
            th.testing.assert_close(have_t, want_t, atol=1e-6, rtol=1e-5, msg=key)
    # and so must the Adam moments of every surviving parameter
    for group, twin_group in zip(optimizer.param_groups, compacted_optimizer.param_groups, strict=True):
        for param, twin_param in zip(group["params"], twin_group["params"], strict=True):
            for key in ("exp_avg", "exp_avg_sq"):
                th.testing.assert_close(compacted_optimizer.state[twin_param][key], optimizer.state[param][key])


def test_slice_parameter_shrinks_grad_and_every_optimizer_state():
    param = th.nn.Parameter(th.randn(5, 3))
    adam, sgd = th.optim.Adam([param], amsgrad=True), th.optim.SGD([param], lr=0.1, momentum=0.9)
    param.sum().backward()
    adam.step()
    sgd.step()
    keep = keep_index(5, [1, 3], param.device)
    moments = {key: adam.state[param][key].clone() for key in ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")}
    momentum = sgd.state[param]["momentum_buffer"].clone()
    slice_parameter_(param, 0, keep, [adam, sgd])
    assert param.shape == (3, 3) and param.grad.shape == (3, 3)
    for key, value in moments.items():
        th.testing.assert_close(adam.state[param][key], value[[0, 2, 4]])
    th.testing.assert_close(sgd.state[param]["momentum_buffer"], momentum[[0, 2, 4]])
    adam.step()  # the optimizer keeps working on the shrunk parameter
    sgd.step()


def test_scaled_columns_carry_the_optimizer_moments_of_the_new_parameterisation():
    """Scaling input columns by f (the input divided by f) divides their gradients by f: Adam's moments become
    those of an Adam that had seen the divided gradients all along."""
    factors = th.tensor([0.5, 2.0, 0.1])
    gradients = [th.randn(4, 3) for _ in range(3)]
    old, new = th.nn.Parameter(th.randn(4, 3)), th.nn.Parameter(th.randn(4, 3))
    old_adam, new_adam = th.optim.Adam([old], amsgrad=True), th.optim.Adam([new], amsgrad=True)
    for gradient in gradients:
        old.grad, new.grad = gradient.clone(), gradient / factors
        old_adam.step()
        new_adam.step()
    weight = old.detach().clone()
    scale_columns_(old, [0, 1, 2], factors, [old_adam])
    th.testing.assert_close(old.detach(), weight * factors)
    for key in ("exp_avg", "exp_avg_sq", "max_exp_avg_sq"):
        th.testing.assert_close(old_adam.state[old][key], new_adam.state[new][key], msg=key)
