"""Time OFENet with units physically removed against the same OFENet with those units only masked.

Hopper-v5 sizes (11-dim observations, 3-dim actions, 6 x 40 units per branch), batch 256. For each share
of removed units, two ways of choosing them:

- ``spread``: the same share of every layer (no layer disappears);
- ``layers``: whole layers first, from the last layer of each branch backwards (depth pruning);

and two implementations: ``masked`` (full-size network, the removed units' theta set to 0, as mask-based
pruning does) and ``removed`` (physically removed). Timed operations: the aux step (forward + backward of
the aux loss, gates sampled, batch statistics), the RL forward ``phi_sa`` at batch 256, and ``phi_s`` at
batch 1 (acting). All variants are measured in interleaved rounds; we report the median over rounds.

    python -m benchmarks.ofenet_removal --rounds 15 --threads 1 --out benchmarks/results/ofenet_removal.csv
"""

import argparse
import csv
import platform
import statistics
from pathlib import Path

import torch as th
from torch.utils.benchmark import Timer

from sb3_xinet.cost import count_parameters
from sb3_xinet.ofenet import OFENet

OBS_DIM, ACTION_DIM, LAYERS, UNITS, BATCH = 11, 3, 6, 40, 256


def removal_plan(net: OFENet, share: float, pattern: str) -> dict[str, dict[int, list[int]]]:
    """Units to remove from each branch: ``share`` of all units, chosen by ``pattern``."""
    plan: dict[str, dict[int, list[int]]] = {}
    generator = th.Generator().manual_seed(0)
    for branch, block in net.blocks().items():
        to_remove = round(share * sum(block.units))
        per_layer: dict[int, list[int]] = {}
        if pattern == "spread":
            for layer_id, n_units in zip(block.layer_ids, block.units, strict=True):
                count = round(share * n_units)
                per_layer[layer_id] = sorted(th.randperm(n_units, generator=generator)[:count].tolist())
        else:
            for layer_id, n_units in reversed(list(zip(block.layer_ids, block.units, strict=True))):
                count = min(n_units, to_remove)
                per_layer[layer_id] = list(range(count))
                to_remove -= count
        plan[branch] = {layer_id: units for layer_id, units in per_layer.items() if units}
    return plan


def build(share: float, pattern: str, removed: bool) -> OFENet:
    th.manual_seed(0)
    net = OFENet(OBS_DIM, ACTION_DIM, [UNITS] * LAYERS, [UNITS] * LAYERS)
    for branch, per_layer in removal_plan(net, share, pattern).items():
        for layer_id, units in per_layer.items():
            if removed:
                net.remove_units(branch, layer_id, units)
            else:
                with th.no_grad():
                    block = net.blocks()[branch]
                    block.layers[block.layer_ids.index(layer_id)].gate.theta[units] = 0.0
    return net


def timers(net: OFENet) -> dict[str, Timer]:
    obs, actions, next_obs = th.randn(BATCH, OBS_DIM), th.rand(BATCH, ACTION_DIM) * 2 - 1, th.randn(BATCH, OBS_DIM)
    env = dict(net=net, obs=obs, actions=actions, next_obs=next_obs, one=obs[:1], th=th)
    return {
        "aux_step_ms": Timer("net.zero_grad(); net.aux_loss(obs, actions, next_obs).backward()", globals=env),
        "phi_sa_ms": Timer("with th.no_grad(): net.phi_sa(obs, actions)", globals=env),
        "act_phi_s_us": Timer("with th.no_grad(): net.phi_s(one)", globals=env),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=15, help="interleaved measurement rounds")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/ofenet_removal.csv"))
    args = parser.parse_args()
    th.set_num_threads(args.threads)

    variants = {("none", 0.0, "full"): build(0.0, "spread", removed=False)}
    for share in (0.5, 0.8):
        for pattern in ("spread", "layers"):
            for removed in (False, True):
                variants[(pattern, share, "removed" if removed else "masked")] = build(share, pattern, removed)
    all_timers = {key: timers(net) for key, net in variants.items()}
    samples: dict[tuple, dict[str, list[float]]] = {key: {name: [] for name in ts} for key, ts in all_timers.items()}
    for _ in range(args.rounds):
        for key, ts in all_timers.items():
            for name, timer in ts.items():
                scale = 1e6 if name.endswith("_us") else 1e3
                samples[key][name].append(timer.blocked_autorange(min_run_time=0.05).median * scale)

    rows = []
    for (pattern, share, kind), per_op in samples.items():
        net = variants[(pattern, share, kind)]
        row = dict(pattern=pattern, removed_share=share, implementation=kind, params=count_parameters([net]))
        row["layers"] = len(net.state.layers) + len(net.state_action.layers)
        row.update({name: round(statistics.median(values), 3) for name, values in per_op.items()})
        rows.append(row)
    base = rows[0]
    for row in rows:
        for name in ("aux_step_ms", "phi_sa_ms", "act_phi_s_us"):
            row[f"{name}_vs_full"] = round(row[name] / base[name], 3)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)

    cpu = platform.processor() or platform.machine()
    print(f"# torch {th.__version__}, {args.threads} thread(s), {cpu}, {args.rounds} rounds")
    header = ["pattern", "removed", "impl", "layers", "params", "aux step ms", "x", "phi_sa ms", "x", "act us", "x"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        cells = [row["pattern"], f"{row['removed_share']:.0%}", row["implementation"], row["layers"], row["params"]]
        for name in ("aux_step_ms", "phi_sa_ms", "act_phi_s_us"):
            cells += [f"{row[name]:.3f}", f"{row[name + '_vs_full']:.2f}"]
        print("| " + " | ".join(str(cell) for cell in cells) + " |")


if __name__ == "__main__":
    main()
