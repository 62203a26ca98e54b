"""The ``--small-widths`` of ``benchmarks/compare.py``: small-from-scratch OFENet-SAC sized to XiNetSAC's final
parameter count, network by network.

For one env of a sweep, read the final widths of every finished XiNetSAC run, rebuild each to count the
parameters of OFENet, the actor and the critics, and average over seeds. Then pick uniform widths (one per
network: every OFENet layer, both actor layers, both layers of each critic) whose counts come closest to those
means: OFENet first (its output size is the heads' input size), then the actor and the critics at that OFENet.

    python benchmarks/small_widths.py benchmarks/results/sweep --env Hopper-v5
"""

import argparse
import csv
import statistics
from pathlib import Path

from sweep_table import architecture_from_units, final_units, model_class

from sb3_xinet import XiNetSAC


def network_params(env: str, policy_kwargs: dict, xinet_class: type = XiNetSAC) -> dict[str, int]:
    """Parameters per network (ofenet, actor, critic<i>) of an OFENet-SAC (or -TQC) built with these policy
    keywords."""
    model = xinet_class("MlpPolicy", env, buffer_size=1, device="cpu", policy_kwargs=dict(gates="none", **policy_kwargs))
    return {network.name: network.params for network in model.pruning_summary().networks}


def small_kwargs(ofenet: int, actor: int, critic: int) -> dict:
    """The policy keywords ``compare.py`` builds for ``--small-widths "ofenet,actor,critic"``."""
    return dict(
        ofenet_kwargs=dict(state_units=[ofenet] * 6, state_action_units=[ofenet] * 6),
        net_arch=dict(pi=[actor] * 2, qf=[critic] * 2),
    )


def closest_width(count, target: float, high: int) -> int:
    """The width in ``[1, high]`` whose (increasing) parameter count ``count(width)`` is closest to ``target``."""
    low = 1
    while low < high:  # the smallest width whose count reaches the target
        middle = (low + high) // 2
        if count(middle) < target:
            low = middle + 1
        else:
            high = middle
    candidates = [width for width in (low - 1, low) if width >= 1]
    return min(candidates, key=lambda width: abs(count(width) - target))


def match_xinet(sweep: Path, env: str, algo: str = "xinet") -> tuple[tuple[int, int, int], dict[str, float], dict[str, int]]:
    """(ofenet, actor, critic) widths, the XiNet runs' (``algo``: ``xinet`` or ``xinet_tqc``) mean final
    parameters per network, the small model's."""
    xinet_class = model_class(algo)
    with (sweep / "runs.csv").open(newline="") as handle:
        runs = [row for row in csv.DictReader(handle) if row["env"] == env and row["algo"] == algo]
    if not runs:
        raise ValueError(f"no finished {algo} run of {env} in {sweep / 'runs.csv'}")
    counts = [
        network_params(env, dict(architecture=architecture_from_units(final_units(sweep, run))), xinet_class) for run in runs
    ]
    target = {name: statistics.mean(count[name] for count in counts) for name in counts[0]}
    critics = [name for name in target if name not in ("ofenet", "actor")]  # the networks critic0, critic1 ...
    critic_target = statistics.mean(target[name] for name in critics)

    def count(ofenet: int, actor: int, critic: int) -> dict[str, int]:
        return network_params(env, small_kwargs(ofenet, actor, critic), xinet_class)

    ofenet = closest_width(lambda w: count(w, 1, 1)["ofenet"], target["ofenet"], 40)
    actor = closest_width(lambda w: count(ofenet, w, 1)["actor"], target["actor"], 256)
    critic = closest_width(lambda w: count(ofenet, 1, w)[critics[0]], critic_target, 256)
    return (ofenet, actor, critic), target, count(ofenet, actor, critic)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweep", type=Path)
    parser.add_argument("--env", default="Hopper-v5")
    parser.add_argument("--algo", default="xinet", choices=["xinet", "xinet_tqc"])
    args = parser.parse_args()
    widths, target, small = match_xinet(args.sweep, args.env, args.algo)
    print(f"{args.algo} final parameters on {args.env}, mean over its finished seeds:")
    for name, value in target.items():
        print(f"  {name}: {value:,.0f} (small: {small[name]:,})")
    print(f"  total: {sum(target.values()):,.0f} (small: {sum(small.values()):,})")
    print(f'--small-widths "{",".join(map(str, widths))}"')


if __name__ == "__main__":
    main()
