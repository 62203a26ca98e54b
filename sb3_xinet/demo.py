"""The main job: a short XiNetSAC run that learns Pendulum-v1, prunes inside ``learn()``, saves and reloads the
pruned agent, evaluates it, and writes its actor as dependency-free C.

    python -m sb3_xinet.demo

What it runs, and why (about 35 s on one thread of a 2-core CPU, so that the README's command, installation
included, stays within 90 s): XiNetSAC's defaults suit MuJoCo budgets of 100k steps and more, so the demo scales
its schedule to ``--steps`` (3,200 by default): random actions for the first 5% of the steps, OFENet pre-trained
on them, the cost-aware regularizer from 25%, removals every 5%, and the end of pruning at 65%, where the surviving
gates are folded into the weights; the last 35% trains the pruned network as a plain small one, which is what
lets it recover from the removals (ending pruning at 75% of 6,000 steps, c = 0.3 kept 27-30% of the parameters
and returned -553 and -576 over two seeds: the swing-up learned in some episodes, not in others). The networks
are small (OFENet 3 x 16 units per branch, actor and critics 64-64: Pendulum needs no more) and learn fast
(learning rate 1e-3, the RL Zoo's for SAC on Pendulum-v1; thetas 0.02). ``--cost-weight`` is the packaged 1.

Measured on 2026-11-30 with the loss scale of today (one thread of a 2-core CPU; a random policy gets about
-1,200, a trained one about -150), mean return over 10 episodes of the reloaded agent: -292.3 (seed 0, 48.2% of
the parameters kept) and -210.6 (seed 1, 51.5%); c = 0.2 kept 74.2% (seed 0, -229.6). With the loss scale
before it (the loss a tenth of the units hold) c = 0.2 kept 39% (-232.6 and -241.7), and a run this short was
sensitive to its length: 3,000 steps gave -218.8, -830.3 and -170.2 (seeds 0, 1, 2) and 3,500 steps -674.3 (seed
0); with a 10% warm-up, 4,000 steps gave -190.8 and 5,000 steps -185.0 (seed 0). Give other seeds more
``--steps`` if they have not learned the swing-up.

It then writes the actor (OFENet's kept state features, the actor, tanh and the rescaling to the action bounds)
as C99 (``--c-out``; :mod:`sb3_xinet.c_actor`) and prints its size next to the dense network's. It runs on one
torch thread (``--threads``): these networks are small, and with one thread per core a busy neighbour process slows
training down many times over.
"""

import argparse
import tempfile
import time
from pathlib import Path

import gymnasium as gym
import torch as th
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.monitor import Monitor

from sb3_xinet.c_actor import write_c
from sb3_xinet.export import c_sizes
from sb3_xinet.plain_actor import actor_of, input_dim
from sb3_xinet.xinet_sac import XiNetSAC


def demo_model(env: str, steps: int, cost_weight: float, seed: int) -> XiNetSAC:
    """XiNetSAC with the demo's schedule (fractions of ``steps``) and sizes; see the module's docstring."""
    return XiNetSAC(
        "MlpPolicy",
        env,
        learning_rate=1e-3,
        learning_starts=steps // 20,
        ofenet_pretrain_steps=steps // 20,
        pruning_start=steps // 4,
        pruning_end=13 * steps // 20,
        prune_freq=steps // 20,
        loss_scale_window=steps // 10,
        cost_weight=cost_weight,
        policy_kwargs=dict(
            net_arch=[64, 64], ofenet_kwargs=dict(state_units=[16] * 3, state_action_units=[16] * 3), theta_learning_rate=0.02
        ),
        seed=seed,
        device="cpu",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="Pendulum-v1", help="a Gymnasium env id with Box actions")
    parser.add_argument("--steps", type=int, default=3200, help="env steps of the whole run")
    parser.add_argument("--cost-weight", type=float, default=1.0, help="c, the one regularization knob")
    parser.add_argument("--episodes", type=int, default=10, help="evaluation episodes of the reloaded agent")
    parser.add_argument("--c-out", default="exported/xinet_demo", help="folder for the C actor (xinet.h, xinet.c)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    th.set_num_threads(args.threads)
    start = time.perf_counter()

    model = demo_model(args.env, args.steps, args.cost_weight, args.seed)
    obs_dim = input_dim(model)
    dense_actor = c_sizes(actor_of(model), obs_dim)
    model.learn(args.steps)
    print(model.pruning_summary())
    ended = "ended, gates folded into the weights" if model.pruning_ended else "still running"
    print(f"trained {args.steps} steps in {time.perf_counter() - start:.0f} s; pruning {ended}")

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "xinet_demo.zip"
        model.save(path)
        loaded = XiNetSAC.load(path, device="cpu")
    eval_env = Monitor(gym.make(args.env))
    eval_env.reset(seed=args.seed)  # the same start states on every run: the printed return is reproducible
    mean, std = evaluate_policy(loaded, eval_env, n_eval_episodes=args.episodes)
    print(
        f"saved and reloaded: {loaded.pruning_summary().params:,} parameters, "
        f"return {mean:.1f} +/- {std:.1f} over {args.episodes} episodes"
    )
    pruned_actor = actor_of(loaded)
    paths = write_c(pruned_actor, obs_dim, args.c_out)
    print(f"C actor written to {paths['c_source']} and {paths['c_header']} (xinet_act(obs, action); C99, no heap):")
    print(f"  pruned: {c_sizes(pruned_actor, obs_dim)}")
    print(f"  dense:  {dense_actor}")
    print(f"total {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
