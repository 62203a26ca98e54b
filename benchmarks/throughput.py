"""Env steps per second, training included, of configurations side by side on Hopper-v5 (or ``--env``), and
(``--profile``) what one gradient step of each spends its time on.

Variants are the configurations of :data:`benchmarks.common.CONFIGS` (all with SB3's defaults: batch 256, one
gradient step per env step, one torch thread), the XiNet ones at a phase of their run (``<config>@<phase>``):

- ``sac`` / ``tqc``: SB3's SAC / sb3-contrib's TQC (256-256 on the raw observation);
- ``ofenet_sac``: dense OFENet-SAC (6 x 40 OFENet units per branch, no gates);
- ``xinet_sac@warmup``: XiNetSAC before pruning starts (gates present, thetas at 1, not sampled);
- ``xinet_sac@pruning``: XiNetSAC with the regularizer on (gates sampled, thetas learning), unpruned;
- ``xinet_sac@pruned``: a pruned XiNetSAC, still pruning (``--pruned``: a saved model, or pruned by hand to
  ``--keep`` of every layer's units);
- ``xinet_sac@folded``: the same after the end of pruning (gates folded: plain OFENet-SAC at the pruned widths;
  ``--pruned`` may also be a :mod:`benchmarks.compare` curve, whose last row's widths rebuild the folded model);
- ``small_ofenet_sac``: dense OFENet-SAC built at the pruned model's widths, no gates (or, with
  ``--small-widths``, at the uniform widths of :mod:`benchmarks.compare`'s small runs);

and likewise ``ofenet_tqc``, ``xinet_tqc@<phase>`` and ``small_ofenet_tqc``. ``--device cuda`` runs every
variant on the GPU.

Each variant first fills its replay buffer with ``--warmup`` random steps (and pre-trains OFENet briefly); then
the variants run ``--chunk`` steps each, in turn, for ``--rounds`` rounds. We report the median steps/s over
rounds and its ratio to the dense OFENet model and to the plain algorithm of its family; interleaving makes the
ratios robust to the drift of a shared machine. With ``--profile N``, each variant's ``train()`` then runs ``N``
gradient steps under ``torch.profiler``: self CPU time by group of operators and the top operators.

    python -m benchmarks.throughput --rounds 7 --chunk 300 --pruned MODEL.zip --out benchmarks/results/throughput
    python -m benchmarks.throughput --variants tqc ofenet_tqc xinet_tqc@folded small_ofenet_tqc --pruned MODEL.zip
    python -m benchmarks.throughput --env Hopper-v5 --variants sac ofenet_sac xinet_sac@folded small_ofenet_sac \
        --pruned benchmarks/results/evidence/curves/Hopper-v5_xinet_sac_0.csv --small-widths 10,217,177
"""

import argparse
import json
import statistics
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import gymnasium as gym
import torch as th
from torch.profiler import ProfilerActivity, profile

from benchmarks.common import (
    CONFIGS,
    architecture_from_units,
    build,
    machine,
    network_size,
    parse_widths,
    read_rows,
    related,
    remove_by_hand,
    write_results,
)

PHASES = ("warmup", "pruning", "pruned", "folded")
DEFAULT = ["sac", "ofenet_sac", "xinet_sac@warmup", "xinet_sac@pruning", "xinet_sac@pruned", "xinet_sac@folded"]
GROUPS = {
    "matmul": ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::matmul", "aten::linear"),
    "random numbers": ("aten::uniform_", "aten::bernoulli_", "aten::normal_", "aten::randint"),
    "optimizer": ("aten::_fused_adam_", "aten::_fused_adamw_"),
    "concatenation": ("aten::cat",),
}


def pruned_model(name: str, path: str | None, args: argparse.Namespace, shared: dict[str, Any]) -> Any:
    """A pruned model of the XiNet configuration ``name``, still pruning: loaded from ``path`` (with a fresh replay
    buffer and the same warm-up as the others; its loss scales come with the save), or pruned by hand."""
    if path:
        model = CONFIGS[name].algo_class.load(path, env=gym.make(args.env), buffer_size=1_000_000, **shared)
        model.pruning_schedule = model.pruning_schedule.replace(start=0, end=None)
        return model
    model = build(name, args.env, dict(shared, pruning_start=0, pruning_end=None, ofenet_pretrain_steps=args.pretrain))
    remove_by_hand(model, args.keep)
    return model


def curve_widths(path: str) -> tuple[dict[str, Any], int]:
    """The ``architecture`` of a run's final widths and its parameter count, from the last row of its
    :mod:`benchmarks.compare` curve (widths, not thetas: enough to rebuild the folded model, whose gates are gone)."""
    row = read_rows(Path(path))[-1]
    return architecture_from_units(json.loads(row["units"])), int(row["params"])


def make_variant(variant: str, args: argparse.Namespace, path: str | None = None) -> Any:
    """A model of a variant (see the module's docstring), ready for its warm-up."""
    name, _, phase = variant.partition("@")
    shared: dict[str, Any] = dict(learning_starts=args.warmup, seed=0, device=args.device, verbose=0)
    xinet = dict(shared, ofenet_pretrain_steps=args.pretrain, pruning_end=None)
    role = CONFIGS[name].role
    if role in ("plain", "dense"):
        return build(name, args.env, xinet if role == "dense" else shared)
    if role == "small" and args.small_widths:
        return build(name, args.env, xinet, parse_widths(args.small_widths))
    if role == "xinet" and phase not in PHASES:
        raise ValueError(f"{variant}: a XiNet variant needs a phase, one of {[f'{name}@{p}' for p in PHASES]}")
    from_curve = path is not None and path.endswith(".csv")
    if from_curve and phase == "pruned":
        raise ValueError(f"{variant}: a curve ({path}) has no thetas to go on pruning with: pass a save (.zip)")
    if role == "small" or (from_curve and phase == "folded"):
        # the folded model trains as plain OFENet-SAC (-TQC) at its pruned widths: built so from a curve's widths
        if from_curve:
            architecture, params = curve_widths(path)
        else:
            architecture = pruned_model(related(name, "xinet"), path, args, shared).policy.architecture()
        policy_kwargs = dict(gates="none", architecture=architecture)
        model = CONFIGS[name].algo_class("MlpPolicy", args.env, cost_weight=0.0, policy_kwargs=policy_kwargs, **xinet)
        rebuilt = model.pruning_summary().params
        if from_curve and rebuilt != params:
            raise ValueError(f"{path}: its widths rebuild {rebuilt} parameters on {args.env}, not {params}")
        return model
    if phase in ("warmup", "pruning"):
        return build(name, args.env, dict(xinet, pruning_start=None if phase == "warmup" else 0))
    model = pruned_model(name, path, args, shared)
    if phase == "folded":
        model.end_pruning()
    return model


def profile_steps(model: Any, steps: int, top: int) -> tuple[dict[str, str], str]:
    """Self CPU time of ``steps`` gradient steps by group of operators, and the ``top`` operators."""
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        model.train(steps, model.batch_size)
    events = prof.key_averages()
    total = sum(event.self_cpu_time_total for event in events)
    shares: dict[str, float] = defaultdict(float)
    for event in events:
        group = next((name for name, ops in GROUPS.items() if event.key in ops), "other ops and overhead")
        shares[group] += event.self_cpu_time_total / total
    ranked = sorted(events, key=lambda event: event.self_cpu_time_total, reverse=True)[:top]
    line = ", ".join(f"{e.key} {e.self_cpu_time_total / total:.0%} ({e.count // steps}/step)" for e in ranked)
    return {group: f"{share:.0%}" for group, share in shares.items()}, line


def measure(models: dict[str, Any], args: argparse.Namespace) -> dict[str, list[float]]:
    """Env steps/s of each model in ``args.rounds`` interleaved rounds of ``args.chunk`` steps."""
    for model in models.values():  # random warm-up, OFENet pre-training and a first update, untimed
        model.learn(args.warmup + 10)
    speeds: dict[str, list[float]] = {variant: [] for variant in models}
    for _ in range(args.rounds):
        for variant, model in models.items():
            start = time.perf_counter()
            model.learn(args.chunk, reset_num_timesteps=False)
            speeds[variant].append(args.chunk / (time.perf_counter() - start))
    return speeds


def speed_rows(models: dict[str, Any], speeds: dict[str, list[float]], args: argparse.Namespace) -> list[dict[str, Any]]:
    """One row per variant: its median speed and the ratios to its family's dense and plain models."""
    medians = {variant: statistics.median(values) for variant, values in speeds.items()}
    rows = []
    for variant, median in medians.items():
        name = variant.partition("@")[0].partition("[")[0]
        dense, plain = medians.get(related(name, "dense")), medians.get(related(name, "plain"))
        rows.append(
            dict(
                variant=variant,
                params=network_size(models[variant])[0],
                steps_per_s=round(median, 1),
                vs_dense=round(median / dense, 2) if dense else "",
                vs_plain=round(median / plain, 2) if plain else "",
                rounds=len(speeds[variant]),
                chunk=args.chunk,
                machine=machine(args.threads) + (f", {th.cuda.get_device_name()}" if args.device != "cpu" else ""),
            )
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", nargs="+", default=DEFAULT)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--chunk", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=1000)
    parser.add_argument("--pretrain", type=int, default=200)
    parser.add_argument("--env", default="Hopper-v5", help="the env of the sizes (and of the --pruned saves)")
    parser.add_argument(
        "--pruned",
        nargs="+",
        default=[None],
        help="pruned XiNetSAC (XiNetTQC) saves (.zip), or runs' curves (.csv: their final widths, for @folded and small)",
    )
    parser.add_argument("--labels", nargs="+", default=None, help="a short name for each --pruned save")
    parser.add_argument("--keep", type=float, default=0.2)
    parser.add_argument("--small-widths", default=None, help='"ofenet,actor,critic" widths of the small variants')
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--profile", type=int, default=0, help="gradient steps to profile per variant (0: none)")
    parser.add_argument("--top", type=int, default=12, help="operators listed per profiled variant")
    parser.add_argument("--out", default="benchmarks/results/throughput")
    args = parser.parse_args()
    th.set_num_threads(args.threads)

    labels = args.labels or [str(index) for index in range(len(args.pruned))]
    if len(labels) != len(args.pruned):
        parser.error("--labels needs one label per --pruned path")
    models = {}
    for variant in args.variants:
        small = CONFIGS[variant.partition("@")[0]].role == "small"
        from_pruned = variant.endswith(("@pruned", "@folded")) or (small and not args.small_widths)
        if from_pruned and len(args.pruned) > 1:
            for label, path in zip(labels, args.pruned, strict=True):
                models[f"{variant}[{label}]"] = make_variant(variant, args, path)
        else:
            models[variant] = make_variant(variant, args, args.pruned[0])
    rows = speed_rows(models, measure(models, args), args)
    title = (
        f"Env steps/s on {args.env}, training included (median of {args.rounds} interleaved rounds of {args.chunk} "
        f"steps; {rows[0]['machine']})"
    )
    columns = dict(variant="variant", params="parameters", steps_per_s="steps/s")
    columns.update(vs_dense="vs dense OFENet", vs_plain="vs SAC/TQC")
    print(write_results(args.out, rows, title, columns))
    if args.profile:
        profiled, tops = [], []
        for variant, model in models.items():
            shares, top = profile_steps(model, args.profile, args.top)
            groups = {group: shares.get(group, "0%") for group in [*GROUPS, "other ops and overhead"]}
            profiled.append({"variant": variant, **groups})
            tops.append(f"- {variant}: {top}")
        title = f"Self CPU time by group of operators over {args.profile} profiled gradient steps (batch 256)"
        text = write_results(f"{args.out}_profile", profiled, title, {key: key for key in profiled[0]})
        text += "\nTop operators (share of self CPU time, calls per step):\n\n" + "\n".join(tops) + "\n"
        Path(f"{args.out}_profile.md").write_text(text)
        print(text)


if __name__ == "__main__":
    main()
