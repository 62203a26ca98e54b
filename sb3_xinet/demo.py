"""The main job: a short XiNetSAC run that learns, prunes inside ``learn()``, and prints what it pruned.

    python -m sb3_xinet.demo --env Pendulum-v1 --steps 4000

The run is short, so it uses a faster schedule than XiNetSAC's defaults (which suit MuJoCo budgets of 100k
steps and more): 1,000 random warm-up steps, 1,000 OFENet pre-training steps, the regularizer on from step
1,500, and a theta learning rate of 0.01. It then saves the pruned model, loads it back and evaluates it.
"""

import argparse
import tempfile
import time
from pathlib import Path

import gymnasium as gym
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.monitor import Monitor

from sb3_xinet.xinet_sac import XiNetSAC


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="Pendulum-v1", help="a Gymnasium env id with 1-D Box spaces")
    parser.add_argument("--steps", type=int, default=4000, help="env steps of the whole run")
    parser.add_argument("--cost-weight", type=float, default=2.0, help="c, the one regularization knob")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    start = time.perf_counter()

    model = XiNetSAC(
        "MlpPolicy",
        args.env,
        learning_starts=1000,
        ofenet_pretrain_steps=1000,
        pruning_start=1500,
        prune_freq=250,
        loss_scale_window=1000,
        cost_weight=args.cost_weight,
        policy_kwargs=dict(net_arch=[64, 64], theta_learning_rate=0.01),
        seed=args.seed,
        device="cpu",
    )
    model.learn(args.steps)
    print(model.pruning_summary())
    print(f"trained in {time.perf_counter() - start:.0f} s")

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "xinet_demo.zip"
        model.save(path)
        loaded = XiNetSAC.load(path, device="cpu")
    mean, std = evaluate_policy(loaded, Monitor(gym.make(args.env)), n_eval_episodes=5)
    print(
        f"saved and reloaded: {loaded.pruning_summary().params:,} parameters, return {mean:.1f} +/- {std:.1f} over 5 episodes"
    )


if __name__ == "__main__":
    main()
