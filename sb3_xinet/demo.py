"""The main job: a short XiNetSAC run that learns, prunes inside ``learn()``, and prints what it pruned.

    python -m sb3_xinet.demo --env Pendulum-v1 --steps 3000

The run is short (about a minute on a 2-core CPU), so it uses a faster schedule and a smaller OFENet than
XiNetSAC's defaults (which suit MuJoCo budgets of 100k steps and more): 500 random warm-up steps, 500 OFENet
pre-training steps, the regularizer on from step 1,000, a theta learning rate of 0.02, and the end of pruning at
step 2,500, where the surviving gates are folded into the weights. It then saves the pruned model, loads it back
and evaluates it. It runs on one torch thread (``--threads``): these networks are small, and with one thread per
core a busy neighbour process slows training down many times over.
"""

import argparse
import tempfile
import time
from pathlib import Path

import gymnasium as gym
import torch as th
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.monitor import Monitor

from sb3_xinet.xinet_sac import XiNetSAC


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="Pendulum-v1", help="a Gymnasium env id with Box actions")
    parser.add_argument("--steps", type=int, default=3000, help="env steps of the whole run")
    parser.add_argument("--cost-weight", type=float, default=2.0, help="c, the one regularization knob")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    th.set_num_threads(args.threads)
    start = time.perf_counter()

    model = XiNetSAC(
        "MlpPolicy",
        args.env,
        learning_starts=500,
        ofenet_pretrain_steps=500,
        pruning_start=1000,
        pruning_end=2500,
        prune_freq=250,
        loss_scale_window=500,
        cost_weight=args.cost_weight,
        policy_kwargs=dict(
            net_arch=[64, 64], ofenet_kwargs=dict(state_units=[16] * 4, state_action_units=[16] * 4), theta_learning_rate=0.02
        ),
        seed=args.seed,
        device="cpu",
    )
    model.learn(args.steps)
    print(model.pruning_summary())
    ended = "ended, gates folded into the weights" if model.pruning_ended else "still running"
    print(f"trained {args.steps} steps in {time.perf_counter() - start:.0f} s; pruning {ended}")

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "xinet_demo.zip"
        model.save(path)
        loaded = XiNetSAC.load(path, device="cpu")
    mean, std = evaluate_policy(loaded, Monitor(gym.make(args.env)), n_eval_episodes=5)
    print(
        f"saved and reloaded: {loaded.pruning_summary().params:,} parameters, return {mean:.1f} +/- {std:.1f} over 5 episodes"
    )
    print(f"total {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
