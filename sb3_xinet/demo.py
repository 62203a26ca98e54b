"""A short run that trains a gated OFENet on an environment's transitions, prunes it, and prints what went.

    python -m sb3_xinet.demo --env Pendulum-v1 --cost-weight 1.0

Transitions come from uniformly random actions (the warm-up data of OFENet-SAC) stored in SB3's replay
buffer. OFENet first learns its aux task with every unit on (which also measures the loss scale of the
regularizer), then the cost-aware penalty is switched on, and units whose theta reaches the threshold are
removed every ``--prune-every`` steps.
"""

import argparse
import time

import gymnasium as gym
import torch as th
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.utils import set_random_seed

from sb3_xinet.cost import LossScale, cost_penalty, count_parameters
from sb3_xinet.ofenet import OFENet


def collect(env_id: str, n_steps: int, seed: int) -> ReplayBuffer:
    """Fill a replay buffer with uniformly random transitions."""
    env = gym.make(env_id)
    buffer = ReplayBuffer(n_steps, env.observation_space, env.action_space, device="cpu")
    obs, _ = env.reset(seed=seed)
    env.action_space.seed(seed)
    for _ in range(n_steps):
        action = env.action_space.sample()
        next_obs, reward, terminated, truncated, _ = env.step(action)
        buffer.add(obs, next_obs, action, reward, terminated, [{}])
        obs = next_obs if not (terminated or truncated) else env.reset()[0]
    env.close()
    return buffer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="Pendulum-v1", help="a Gymnasium env id with Box spaces")
    parser.add_argument("--transitions", type=int, default=5000, help="random transitions to collect")
    parser.add_argument("--warmup-steps", type=int, default=1000, help="aux steps with every unit on")
    parser.add_argument("--prune-steps", type=int, default=2000, help="aux steps with the penalty on")
    parser.add_argument("--prune-every", type=int, default=250)
    parser.add_argument("--cost-weight", type=float, default=1.0, help="c, the one regularization knob")
    parser.add_argument("--threshold", type=float, default=1e-3, help="remove a unit when theta <= threshold")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    set_random_seed(args.seed)
    start = time.perf_counter()

    buffer = collect(args.env, args.transitions, args.seed)
    net = OFENet.from_spaces(buffer.observation_space, buffer.action_space)
    optimizer = th.optim.Adam([{"params": net.weight_parameters(), "lr": 3e-4}, {"params": net.gate_parameters(), "lr": 1e-2}])
    initial_units = {branch: block.units for branch, block in net.blocks().items()}
    initial_params = count_parameters([net])
    scale = LossScale(window=200)  # the loss at the end of the warm-up, not its first steps

    def aux_step(penalty_on: bool) -> float:
        data = buffer.sample(256)
        loss = net.aux_loss(data.observations.float(), data.actions.float(), data.next_observations.float())
        total = (
            loss + cost_penalty(args.cost_weight, net.expected_params()[0], initial_params, scale.value)
            if penalty_on
            else loss
        )
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        net.project_()
        return loss.item()

    for _ in range(args.warmup_steps):
        scale.update(aux_step(penalty_on=False))
    print(f"{args.env}: aux loss after warm-up {scale.value:.4g} (the loss scale of the penalty)")
    for step in range(1, args.prune_steps + 1):
        loss = aux_step(penalty_on=True)
        if step % args.prune_every == 0:
            removed = net.prune(args.threshold, [optimizer])
            count = sum(len(units) for per_layer in removed.values() for units in per_layer.values())
            print(f"step {step:5d}: aux loss {loss:.4g}, removed {count:3d} units, params {count_parameters([net])}")

    print(f"\nPruned OFENet ({time.perf_counter() - start:.0f} s): {count_parameters([net])} / {initial_params} parameters")
    for branch, block in net.blocks().items():
        alive = dict(zip(block.layer_ids, block.units, strict=True))
        cells = [f"{alive.get(layer_id, 0)}/{n}" for layer_id, n in enumerate(initial_units[branch])]
        print(f"  {branch:>12} units alive per layer: {' '.join(cells)}")


if __name__ == "__main__":
    main()
