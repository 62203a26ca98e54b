"""What one training step spends its time on: ``torch.profiler`` over XiNetSAC's and SB3 SAC's gradient steps.

For each variant (those of ``benchmarks/throughput.py``: ``sac``, ``dense``, ``xinet_pruning``,
``xinet_folded``, ``small``; the pruned ones from ``--pruned`` or pruned by hand), after a short warm-up: the
median time of one ``train(1, 256)`` call over ``--steps`` calls, then a profile of ``--profiled`` calls, its
self CPU time split into groups (matrix products, random numbers, elementwise and other ops, optimizer kernels)
and its top operators.

    python benchmarks/profile_step.py --pruned benchmarks/results/pilot_fixed/Hopper-v5_xinet_0.zip \\
        --out benchmarks/results/profile_step
"""

import argparse
import statistics
import time
from collections import defaultdict
from pathlib import Path

import torch as th
from tables import write_results
from throughput import build
from torch.profiler import ProfilerActivity, profile

GROUPS = {
    "matmul": ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::matmul", "aten::linear"),
    "random numbers": ("aten::uniform_", "aten::bernoulli_", "aten::normal_", "aten::randint"),
    "optimizer": ("aten::_fused_adam_", "aten::_fused_adamw_"),
    "concatenation": ("aten::cat",),
}


def step_times(model, steps: int, batch_size: int) -> float:
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        model.train(1, batch_size)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", nargs="+", default=["sac", "dense", "xinet_pruning", "xinet_folded", "small"])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--profiled", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=1000)
    parser.add_argument("--pretrain", type=int, default=50)
    parser.add_argument("--pruned", default=None, help="a pruned XiNetSAC save (.zip)")
    parser.add_argument("--keep", type=float, default=0.2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--top", type=int, default=12)
    parser.add_argument("--out", default="benchmarks/results/profile_step")
    args = parser.parse_args()
    th.set_num_threads(args.threads)

    rows, tops = [], []
    for variant in args.variants:
        model = build(variant, args, args.pruned)
        model.learn(args.warmup + 10)
        if variant == "xinet_pruning":
            model.cost_active = True  # the regularizer's phase: every theta learns, every gate samples
        ms = step_times(model, args.steps, 256)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            model.train(args.profiled, 256)
        events = prof.key_averages()
        total = sum(event.self_cpu_time_total for event in events)
        shares: dict[str, float] = defaultdict(float)
        for event in events:
            group = next((name for name, ops in GROUPS.items() if event.key in ops), "other ops and overhead")
            shares[group] += event.self_cpu_time_total / total
        rows.append(dict(variant=variant, ms_per_step=round(ms, 2), **{k: f"{v:.0%}" for k, v in shares.items()}))
        top = sorted(events, key=lambda event: event.self_cpu_time_total, reverse=True)[: args.top]
        tops.append(
            f"{variant}: "
            + ", ".join(f"{e.key} {e.self_cpu_time_total / total:.0%} ({e.count // args.profiled}/step)" for e in top)
        )
    columns = {
        "variant": "variant",
        "ms_per_step": "ms per gradient step",
        **{g: g for g in [*GROUPS, "other ops and overhead"]},
    }
    for row in rows:
        for group in columns:
            row.setdefault(group, "0%")
    title = (
        f"One gradient step (batch 256), median of {args.steps}; self CPU time by group over {args.profiled} profiled steps"
    )
    text = write_results(args.out, rows, title, columns)
    text += "\nTop operators (share of self CPU time, calls per step):\n\n" + "\n".join(f"- {line}" for line in tops) + "\n"
    Path(args.out).with_suffix(".md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
