"""Env steps per second, training included, of SB3 SAC, dense OFENet-SAC and XiNetSAC, side by side on Hopper-v5
(or ``--env``); with ``--algo tqc``, of sb3-contrib's TQC, dense OFENet-TQC and XiNetTQC.

Variants (all with SB3's defaults: batch 256, one gradient step per env step, one torch thread):

- ``sac``: SB3's SAC (actor and critics 256-256 on the raw observation); ``tqc``: sb3-contrib's TQC (its defaults:
  2 critics of 25 quantiles);
- ``dense``: OFENet-SAC, XiNetSAC's code path with gates and pruning off (``gates="none"``, ``cost_weight=0``);
- ``xinet_warmup``: XiNetSAC before pruning starts (gates on, thetas frozen at 1);
- ``xinet_pruning``: XiNetSAC with the regularizer on and every unit still there (thetas learning, gates sampled);
- ``xinet_pruned``: XiNetSAC after pruning, still training with the regularizer on. Either a real pruned model
  (``--pruned PATH`` to a XiNetSAC save, e.g. the end of a ``benchmarks/compare.py`` run), or, without it, the
  full model with units removed by hand: ``--keep`` of the units of every layer. Several ``--pruned`` paths
  (e.g. the parameter and the time cost model's) give one row per path and variant, named ``variant[label]``
  with the labels of ``--labels``;
- ``xinet_folded``: the same pruned model after the end of pruning (``end_pruning()``: thetas folded into the
  weights, gates gone), training on as OFENet-SAC at its widths;
- ``small``: OFENet-SAC built from scratch at the pruned model's widths (gates and pruning off), the speed that
  ``xinet_folded`` should match.

``--device cuda`` runs every variant on the GPU.

Each variant first fills its replay buffer with ``--warmup`` random steps (and pre-trains OFENet briefly); then
the variants run ``--chunk`` steps each, in turn, for ``--rounds`` rounds. We report the median steps/s over
rounds and its ratio to ``dense``; interleaving makes the ratios robust to the drift of a shared machine.

    python benchmarks/throughput.py --rounds 7 --chunk 300 --pruned benchmarks/results/hopper_100k/Hopper-v5_xinet_0.zip \\
        --out benchmarks/results/throughput

The XiNet variants (``dense`` to ``small``) are built with XiNetSAC, or with ``--algo tqc`` XiNetTQC; ratios are
given to ``dense`` and to the plain algorithm of ``--algo`` (``sac`` or ``tqc``, when it is among the variants).
"""

import argparse
import inspect
import os
import platform
import statistics
import time
from typing import Any

import gymnasium as gym
import torch as th
from sweep_table import PLAIN, family, model_class
from tables import write_results

from sb3_xinet import XiNetSAC

PER_PRUNED = ("xinet_pruned", "xinet_folded", "small")  # the variants built from a pruned model


def remove_by_hand(model: XiNetSAC, keep: float) -> None:
    """Drive the thetas of all but ``keep`` of the units of every layer to 0, then prune them."""
    with th.no_grad():
        for block in model.policy.gated_blocks().values():
            for gate in block.gates():
                gate.theta[max(1, round(keep * gate.n_units)) :] = 0.0
    model.prune()


def pruned_model(path: str | None, args: argparse.Namespace, common: dict[str, Any], xinet: dict[str, Any]) -> XiNetSAC:
    """The pruned model: loaded from ``path`` (with a fresh replay buffer and the same warm-up as the others;
    it keeps training with the regularizer on, its loss scales come with the save), or pruned by hand."""
    xinet_class = model_class(family(args.algo)["xinet"])
    if path:
        model = xinet_class.load(path, env=gym.make(args.env), buffer_size=1_000_000, **common)
        model.pruning_start = 0
        return model
    model = xinet_class("MlpPolicy", args.env, pruning_start=0, **xinet)
    remove_by_hand(model, args.keep)
    return model


def build(variant: str, args: argparse.Namespace, path: str | None = None) -> Any:
    common: dict[str, Any] = dict(learning_starts=args.warmup, seed=0, device=args.device, verbose=0)
    xinet = dict(common, ofenet_pretrain_steps=args.pretrain)
    xinet_class = model_class(family(args.algo)["xinet"])
    if "pruning_end" in inspect.signature(xinet_class).parameters:  # so that the script also measures older versions
        xinet["pruning_end"] = 10**10
    if variant in PLAIN:
        return model_class(variant)("MlpPolicy", args.env, **common)
    if variant == "dense":
        return xinet_class("MlpPolicy", args.env, cost_weight=0.0, policy_kwargs=dict(gates="none"), **xinet)
    if variant == "xinet_warmup":
        return xinet_class("MlpPolicy", args.env, pruning_start=10**9, **xinet)
    if variant == "xinet_pruning":
        return xinet_class("MlpPolicy", args.env, pruning_start=0, **xinet)
    if variant == "xinet_pruned":
        model = pruned_model(path, args, common, xinet)
        model.pruning_end = 10**10
        return model
    if variant == "xinet_folded":
        model = pruned_model(path, args, common, xinet)
        model.end_pruning()
        return model
    if variant == "small":
        architecture = pruned_model(path, args, common, xinet).policy.architecture()
        return xinet_class(
            "MlpPolicy", args.env, cost_weight=0.0, policy_kwargs=dict(gates="none", architecture=architecture), **xinet
        )
    raise ValueError(f"Unknown variant {variant!r}")


def parameters(model: Any) -> int:
    if hasattr(model, "pruning_summary"):
        return model.pruning_summary().params
    return sum(p.numel() for net in (model.actor, model.critic) for p in net.parameters())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--variants",
        nargs="+",
        default=["sac", "dense", "xinet_warmup", "xinet_pruning", "xinet_pruned", "xinet_folded", "small"],
    )
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--chunk", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=1000)
    parser.add_argument("--pretrain", type=int, default=200)
    parser.add_argument("--algo", choices=sorted(PLAIN), default="sac", help="XiNetSAC or XiNetTQC for the XiNet variants")
    parser.add_argument("--env", default="Hopper-v5", help="the env of the sizes (and of the --pruned saves)")
    parser.add_argument("--pruned", nargs="+", default=[None], help="pruned XiNetSAC (XiNetTQC) saves (.zip)")
    parser.add_argument("--labels", nargs="+", default=None, help="a short name for each --pruned save")
    parser.add_argument("--keep", type=float, default=0.2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--out", default="benchmarks/results/throughput")
    args = parser.parse_args()
    th.set_num_threads(args.threads)

    labels = args.labels or [str(index) for index in range(len(args.pruned))]
    if len(labels) != len(args.pruned):
        parser.error("--labels needs one label per --pruned path")
    models = {}
    for variant in args.variants:
        if variant in PER_PRUNED and len(args.pruned) > 1:
            models.update(
                {f"{variant}[{label}]": build(variant, args, path) for label, path in zip(labels, args.pruned, strict=True)}
            )
        else:
            models[variant] = build(variant, args, args.pruned[0])
    for model in models.values():  # random warm-up, OFENet pre-training and a first update, untimed
        model.learn(args.warmup + 10)
    speeds: dict[str, list[float]] = {variant: [] for variant in models}
    for _ in range(args.rounds):
        for variant, model in models.items():
            start = time.perf_counter()
            model.learn(args.chunk, reset_num_timesteps=False)
            speeds[variant].append(args.chunk / (time.perf_counter() - start))

    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {args.threads} torch thread(s)"
    if args.device != "cpu":
        machine += f", {th.cuda.get_device_name()}"
    base = statistics.median(speeds["dense"]) if "dense" in speeds else None
    plain = statistics.median(speeds[args.algo]) if args.algo in speeds else None
    rows = []
    for variant, values in speeds.items():
        median = statistics.median(values)
        rows.append(
            dict(
                variant=variant,
                params=parameters(models[variant]),
                steps_per_s=round(median, 1),
                vs_dense=round(median / base, 2) if base else "",
                vs_plain=round(median / plain, 2) if plain else "",
                rounds=len(values),
                chunk=args.chunk,
                machine=machine,
            )
        )
    title = (
        f"Env steps/s on {args.env}, training included "
        f"(median of {args.rounds} interleaved rounds of {args.chunk} steps; {machine})"
    )
    name = args.algo.upper()
    columns = dict(
        variant="variant",
        params="parameters",
        steps_per_s="steps/s",
        vs_dense=f"vs dense OFENet-{name}",
        vs_plain=f"vs {'SB3' if args.algo == 'sac' else 'sb3-contrib'} {name}",
    )
    print(write_results(args.out, rows, title, columns))


if __name__ == "__main__":
    main()
