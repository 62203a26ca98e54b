"""Where a short pruning phase leaves the networks: units per layer and parameters of XiNetSAC and XiNetTQC at
their default sizes, every ``--every`` env steps, on a short schedule (warm-up and OFENet pre-training of
``--start`` / 2 steps, pruning from ``--start``, removals every 500 steps, no end). A quick look at how hard ``c``
cuts each network (e.g. after a change of the loss scale), not a return comparison.

    python -m benchmarks.short_pruning --env Hopper-v5 --steps 10000 --out benchmarks/results/short_pruning
"""

import argparse
import json
from typing import Any

import torch as th

from benchmarks.common import machine, write_results
from sb3_xinet import XiNetSAC, XiNetTQC


def widths(model: Any) -> dict[str, list[int]]:
    """Units alive per layer, per network."""
    return {network.name: [layer.units for layer in network.layers] for network in model.pruning_summary().networks}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="Hopper-v5")
    parser.add_argument("--algos", nargs="+", default=["XiNetSAC", "XiNetTQC"], choices=["XiNetSAC", "XiNetTQC"])
    parser.add_argument("--start", type=int, default=4000, help="env step at which pruning starts")
    parser.add_argument("--steps", type=int, default=10000)
    parser.add_argument("--every", type=int, default=2000)
    parser.add_argument("--cost-weight", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="benchmarks/results/short_pruning")
    args = parser.parse_args()
    th.set_num_threads(1)
    rows = []
    for name in args.algos:
        algo_class = {"XiNetSAC": XiNetSAC, "XiNetTQC": XiNetTQC}[name]
        model = algo_class(
            "MlpPolicy",
            args.env,
            learning_starts=args.start // 2,
            ofenet_pretrain_steps=args.start // 2,
            pruning_start=args.start,
            pruning_end=None,
            prune_freq=500,
            loss_scale_window=args.start // 2,
            cost_weight=args.cost_weight,
            seed=args.seed,
            device="cpu",
        )
        for step in range(args.start, args.steps + 1, args.every):
            model.learn(step - model.num_timesteps, reset_num_timesteps=model.num_timesteps == 0)
            summary = model.pruning_summary()
            units = widths(model)
            rows.append(
                dict(
                    algo=name,
                    step=step,
                    params_fraction=round(summary.params_fraction, 3),
                    actor=units["actor"],
                    critics=[units[network] for network in units if network.startswith("critic")],
                    ofenet=units["ofenet"],
                )
            )
            print(json.dumps(rows[-1]), flush=True)
    title = (
        f"Units per layer on {args.env} with c = {args.cost_weight} (pruning from step {args.start}, seed {args.seed}; "
        f"{machine(1)})"
    )
    columns = dict(algo="algorithm", step="step", params_fraction="parameters left", actor="actor", critics="critics")
    columns.update(ofenet="OFENet (state, then state-action layers)")
    print(write_results(args.out, rows, title, columns))


if __name__ == "__main__":
    main()
