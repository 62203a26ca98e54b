"""Pruning pressure per layer: the cost gradient a layer's thetas get against the task gradient they get, for
XiNetSAC and XiNetTQC at the same widths and ``c``, under three loss scales: the loss level (the scale until
2026-11-30), the loss a tenth of the units hold (the scale of 2026-11-30) and today's, the regularizer's: the task
gradient's RMS over the critic's thetas times their number, times ``GRADIENT_UNIT`` (:func:`gradient_scales`); and,
with ``--reward-noise``, the same on rewards with noise no network can predict.

Each algorithm trains a short run into its pruning phase (``--steps``), then, on ``--batches`` replay batches
(the same rows, gate samples and noise for every scale), per gated layer of the critics: the cost gradient
``c * L_ref / C0 * dC/dtheta`` (mean over the layer's units) over the root mean square of the task gradient
``dL/dtheta`` of the critic's own loss (sampled gates, straight-through, as in training; over the units and the
batches), and over that of the expected task gradient (averaged over the batches first: what decides where a
theta drifts, without the batches' noise). ``L_ref`` is measured on the same batches: the loss level is the
critic's mean loss with mean gates, the held loss the rise of that loss when each unit is dropped with
probability 0.1 (the loss a tenth of the units hold).

    python -m benchmarks.pressure --env Hopper-v5 --seeds 0 1 2 --out benchmarks/results/pressure
    python -m benchmarks.pressure --env Hopper-v5 --reward-noise 1.0 --out benchmarks/results/pressure_noise
"""

import argparse
from collections.abc import Callable
from typing import Any

import numpy as np
import torch as th

from benchmarks.common import machine, write_results
from sb3_xinet import XiNetSAC, XiNetTQC
from sb3_xinet.common.training import XiNetTraining
from sb3_xinet.gates import BernoulliGate
from sb3_xinet.regularizer import gradient_scale, penalty_weight

SCALES = ("loss level", "held loss", "gradient RMS")
DROP_RATE = 0.1  # the held loss is the one a tenth of the units hold


def held_loss(loss: Callable[[], th.Tensor], module: th.nn.Module, generator: th.Generator) -> th.Tensor:
    """The loss a tenth of the gated units of ``module`` hold: the rise of ``loss`` (a deterministic pass, mean
    gates) when each unit is dropped with probability ``DROP_RATE``, per row."""

    def drop(gate: th.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], output: th.Tensor) -> th.Tensor:
        keep = th.full_like(output, 1.0 - DROP_RATE)
        return output * th.bernoulli(keep, generator=generator)

    full = loss()
    gates = [gate for gate in module.modules() if isinstance(gate, BernoulliGate)]
    hooks = [gate.register_forward_hook(drop, with_kwargs=True) for gate in gates]
    try:
        dropped = loss()
    finally:
        for hook in hooks:
            hook.remove()
    return dropped - full


def settings(args: argparse.Namespace, seed: int) -> dict[str, Any]:
    """The probe's settings: small equal widths for both algorithms, a short warm-up, pruning from ``--start``."""
    return dict(
        learning_starts=args.start // 2,
        ofenet_pretrain_steps=args.start // 2,
        pruning_start=args.start,
        pruning_end=None,
        prune_freq=10**9,  # nothing removed: the probe reads the pressure, not its result
        loss_scale_window=args.start // 2,
        cost_weight=args.cost_weight,
        policy_kwargs=dict(net_arch=[64, 64], ofenet_kwargs=dict(state_units=[16] * 3, state_action_units=[16] * 3)),
        seed=seed,
        device="cpu",
    )


def batch_terms(
    model: XiNetTraining, rows: int, noise: float, generator: th.Generator
) -> tuple[list[list[th.Tensor]], th.Tensor]:
    """On one replay batch with ``noise`` added to its rewards: the task gradient of every critic layer's thetas
    (per critic, per layer) and each scale's value per critic ((2, n_critics))."""
    policy, critic = model.policy, model.critic
    data = model.replay_buffer.sample(rows, env=model._vec_normalize_env)
    noisy = data._replace(rewards=data.rewards + noise * th.randn(data.rewards.shape, generator=generator))
    with th.no_grad():
        z_s = policy.ofenet.phi_s(policy.obs_to_float(data.observations))
        z_s_next = policy.ofenet.phi_s(policy.obs_to_float(data.next_observations))
    ent_coef = th.exp(model.log_ent_coef.detach()) if model.log_ent_coef is not None else model.ent_coef_tensor
    z_sa, target = model._critic_target(noisy, z_s, z_s_next, ent_coef)
    per_sample = model._critic_losses(critic.q_values(z_sa, stochastic=True), target)
    grads = []
    for index, q_net in enumerate(critic.q_networks):
        thetas = [layer.gate.theta for layer in q_net.latent.layers]
        grads.append(list(th.autograd.grad(per_sample[index].mean(), thetas, retain_graph=True)))
    with th.no_grad():

        def losses() -> th.Tensor:
            return model._critic_losses(critic.q_values(z_sa, stochastic=False), target).mean(dim=1)

        scales = th.stack([losses(), held_loss(losses, critic, generator)])
    return grads, scales


def gradient_scales(terms: list[tuple[list[list[th.Tensor]], th.Tensor]]) -> th.Tensor:
    """The regularizer's scale, per critic (:func:`sb3_xinet.regularizer.gradient_scale`): ``GRADIENT_UNIT`` times
    the root mean square of the per-batch task gradient over the critic's thetas, times their number."""
    values = []
    for index in range(len(terms[0][0])):
        flat = th.stack([th.cat([grad.flatten() for grad in grads[index]]) for grads, _ in terms])  # (batches, thetas)
        values.append(gradient_scale(float(flat.pow(2).mean()), flat.shape[1]))
    return th.tensor(values)


def measure(model: XiNetTraining, batches: int, noise: float, seed: int, rows: int = 256) -> list[dict[str, Any]]:
    """The pressure per critic layer and scale (see the module's docstring), on ``batches`` batches of ``rows``."""
    np.random.seed(seed)  # the same rows (SB3 samples with numpy), gate samples and drops for every noise level
    th.manual_seed(seed)
    generator = th.Generator().manual_seed(seed + 1)
    for theta in model.policy.critic_parameters()[1]:
        theta.requires_grad_(True)
    terms = [batch_terms(model, rows, noise, generator) for _ in range(batches)]
    scales = th.stack([scale for _, scale in terms]).mean(dim=0)  # (2, n_critics)
    scales = th.cat([scales, gradient_scales(terms)[None]])
    regularizer = model.regularizer
    regularizer.switch(True)
    cost_grads = dict(regularizer.gradients(model.policy) or {})
    table = []
    for index, q_net in enumerate(model.critic.q_networks):
        name = f"critic{index}"
        costs = {gate.theta: gate.cost_grad for gate in cost_grads[name]}
        for layer_index, layer in enumerate(q_net.latent.layers):
            task = th.stack([grads[index][layer_index] for grads, _ in terms])
            task_rms = float(task.pow(2).mean().sqrt())
            expected_rms = float(task.mean(dim=0).pow(2).mean().sqrt())  # of the gradient averaged over the batches
            for scale_index, scale in enumerate(SCALES):
                factor = penalty_weight(regularizer.cost_weight, float(scales[scale_index, index]), regularizer.initial_cost)
                cost = float(costs[layer.gate.theta].mean()) * factor
                table.append(dict(critic=name, layer=layer_index, scale=scale, l_ref=float(scales[scale_index, index]),
                                 cost=cost, task_rms=task_rms, pressure=cost / task_rms,
                                 expected_rms=expected_rms, expected_pressure=cost / expected_rms))  # fmt: skip
    return table


def geometric_mean(values: list[float]) -> float:
    return float(np.exp(np.mean(np.log(values))))


def per_layer_ratios(table: list[dict[str, Any]], key: str, scale: str, noise: float) -> list[float]:
    """Per critic layer, XiNetTQC's pressure over XiNetSAC's: the geometric means over seeds and critics (the
    critics of one model are alike in law, so their spread is noise, not a difference between the algorithms)."""
    layers = sorted({row["layer"] for row in table})
    ratios = []
    for layer in layers:
        rows = [r for r in table if r["layer"] == layer and r["scale"] == scale and r["reward_noise"] == noise]
        tqc = geometric_mean([r[key] for r in rows if r["algo"] == "XiNetTQC"])
        ratios.append(tqc / geometric_mean([r[key] for r in rows if r["algo"] == "XiNetSAC"]))
    return ratios


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="Hopper-v5")
    parser.add_argument("--start", type=int, default=2000, help="env step at which pruning starts")
    parser.add_argument("--steps", type=int, default=2500, help="env steps trained before the measurement")
    parser.add_argument("--batches", type=int, default=50)
    parser.add_argument("--cost-weight", type=float, default=1.0)
    parser.add_argument("--reward-noise", type=float, nargs="+", default=[0.0], help="standard deviations")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--out", default="benchmarks/results/pressure")
    args = parser.parse_args()
    th.set_num_threads(1)
    table = []
    for seed in args.seeds:
        for algo_class in (XiNetSAC, XiNetTQC):
            model = algo_class("MlpPolicy", args.env, **settings(args, seed)).learn(args.steps)
            for noise in args.reward_noise:
                for row in measure(model, args.batches, noise, seed):
                    table.append(dict(algo=algo_class.__name__, seed=seed, reward_noise=noise, **row))
    keys = ("seed", "reward_noise", "critic", "layer", "scale")
    for row in table:
        sac = next(r for r in table if r["algo"] == "XiNetSAC" and all(r[key] == row[key] for key in keys))
        row["vs_sac"] = round(row["pressure"] / sac["pressure"], 2)
        row["expected_vs_sac"] = round(row["expected_pressure"] / sac["expected_pressure"], 2)
    summary = "; ".join(
        f"{scale}, noise {noise}: "
        + " / ".join(f"{ratio:.2f}" for ratio in per_layer_ratios(table, key, scale, noise))
        + (" (expected gradient)" if key == "expected_pressure" else "")
        for key in ("pressure", "expected_pressure")
        for noise in args.reward_noise
        for scale in SCALES
    )
    for row in table:
        row.update({key: round(row[key], 5) for key in ("l_ref", "cost", "task_rms", "pressure", "expected_pressure")})
    title = (
        f"Pruning pressure per critic layer on {args.env} at step {args.steps} (pruning from {args.start}, c = "
        f"{args.cost_weight}, {args.batches} batches, seeds {args.seeds}; {machine(1)}); XiNetTQC over XiNetSAC per "
        f"layer, geometric mean over seeds and critics: {summary}"
    )
    columns = dict(algo="algorithm", seed="seed", reward_noise="reward noise", critic="critic", layer="layer")
    columns.update(scale="scale", l_ref="L_ref", cost="cost gradient", task_rms="RMS task gradient", pressure="pressure")
    columns.update(vs_sac="vs XiNetSAC", expected_pressure="pressure (expected gradient)", expected_vs_sac="vs XiNetSAC")
    print(write_results(args.out, table, title, columns))


if __name__ == "__main__":
    main()
