"""Export the deterministic actor of a saved model (XiNetSAC, XiNetTQC, SB3 SAC or sb3-contrib TQC) for
deployment without SB3 or sb3_xinet: as a ``torch.export`` program, as ONNX, and as dependency-free C99.

Every format computes what ``model.predict(obs, deterministic=True)`` returns, from flat float32 observations
(:mod:`sb3_xinet.plain_actor` says what is folded and how spaces are flattened):

- ``<out>.pt2``: a ``torch.export`` ``ExportedProgram`` (batch size dynamic); ``torch.export.load(path).module()``
  runs it with torch alone;
- ``<out>.onnx``: ONNX from torch's ``torch.export``-based exporter (``dynamo=True``), for ONNX Runtime;
- with ``--c DIR``: ``DIR/<name>.h`` and ``DIR/<name>.c`` (:mod:`sb3_xinet.c_actor`), one function
  ``<name>_act(const float *obs, float *action)`` and its weights, for any C99 compiler.

    python -m sb3_xinet.export logs/xinet_sac/Hopper-v5_1/Hopper-v5.zip --out exported/hopper --c exported/c

prints the actor's weight count, each file's single-observation latency (torch, ONNX Runtime) and the C actor's
sizes.
"""

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch as th
from stable_baselines3.common.base_class import BaseAlgorithm

from sb3_xinet.c_actor import work_floats, write_c
from sb3_xinet.plain_actor import DeterministicActor, actor_of, input_dim, load_model


def export(
    model: BaseAlgorithm | str | Path, out: str | Path | None = None, onnx: bool = True, c: str | Path | None = None
) -> dict[str, Path]:
    """Write ``<out>.pt2`` and, if ``onnx``, ``<out>.onnx`` (when ``out`` is given), and the C actor into the
    folder ``c`` (when given); return the paths written."""
    if not isinstance(model, BaseAlgorithm):
        model = load_model(model, buffer_size=1)
    actor, obs_dim = actor_of(model), input_dim(model)
    paths = save_actor(actor, obs_dim, out, onnx) if out is not None else {}
    if c is not None:
        paths.update(write_c(actor, obs_dim, c))
    return paths


def save_actor(actor: DeterministicActor, obs_dim: int, out: str | Path, onnx: bool = True) -> dict[str, Path]:
    """Write a plain-torch actor (observations -> actions) as ``<out>.pt2`` and, if ``onnx``, ``<out>.onnx``."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    example = (th.zeros(2, obs_dim),)  # batch 2: a batch of 1 would be specialised as a constant
    dynamic_shapes = {"obs": {0: th.export.Dim("batch")}}
    paths = {"exported_program": out.with_suffix(".pt2")}
    th.export.save(th.export.export(actor, example, dynamic_shapes=dynamic_shapes), paths["exported_program"])
    if onnx:
        paths["onnx"] = out.with_suffix(".onnx")
        th.onnx.export(
            actor,
            example,
            str(paths["onnx"]),
            input_names=["observation"],
            output_names=["action"],
            dynamic_shapes=dynamic_shapes,
            dynamo=True,
            verbose=False,
        )
    return paths


def latency_us(run: Callable[[], object], rounds: int = 7, number: int = 200) -> float:
    """Median over rounds of the mean time of ``number`` calls, in microseconds."""
    run()
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(number):
            run()
        times.append((time.perf_counter() - start) / number * 1e6)
    return statistics.median(times)


def c_sizes(actor: DeterministicActor, obs_dim: int) -> str:
    """The C actor's weights and working memory, in bytes (float32)."""
    weights = sum(parameter.numel() for parameter in actor.parameters())
    work = sum(work_floats(actor, obs_dim))
    return f"{weights:,} weights ({4 * weights / 1024:.1f} KiB of const data), {4 * work:,} bytes of stack"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="a XiNetSAC, XiNetTQC, SAC or TQC save (.zip)")
    parser.add_argument("--out", help="path without suffix of the .pt2 and .onnx files")
    parser.add_argument("--no-onnx", action="store_true", help="the torch.export program only")
    parser.add_argument("--c", help="folder for the C actor (xinet.h, xinet.c)")
    args = parser.parse_args()
    if args.out is None and args.c is None:
        parser.error("give --out, --c or both")
    model = load_model(args.model, buffer_size=1)
    actor, obs_dim = actor_of(model), input_dim(model)
    paths = export(model, args.out, onnx=not args.no_onnx, c=args.c)
    print(f"exported actor: {sum(p.numel() for p in actor.parameters()):,} weights (BatchNorm and thetas folded)")
    obs = th.zeros(1, obs_dim)
    if "exported_program" in paths:
        program = th.export.load(paths["exported_program"]).module()
        with th.no_grad():
            print(f"  {paths['exported_program']}: {latency_us(lambda: program(obs)):.1f} us per observation")
    if "onnx" in paths:
        import onnxruntime  # optional: the export extra

        session = onnxruntime.InferenceSession(str(paths["onnx"]), providers=["CPUExecutionProvider"])
        feed = {"observation": np.zeros((1, obs_dim), dtype=np.float32)}
        print(f"  {paths['onnx']}: {latency_us(lambda: session.run(None, feed)):.1f} us per observation")
    if "c_source" in paths:
        print(f"  {paths['c_header']}, {paths['c_source']}: {c_sizes(actor, obs_dim)}")


if __name__ == "__main__":
    main()
