"""Single-observation latency of the deterministic actor (OFENet state branch + actor) on CPU, Hopper-v5 sizes (or
``--env``).

The networks: SB3 SAC's actor (256-256 on the raw observation, exported as the same plain-torch module), the
dense OFENet actor (6 x 40 OFENet units, 256-256 actor) and pruned ones: real pruned models (``--pruned PATH
...`` to XiNetSAC saves, named by ``--labels``) or, without them, the dense one with all but ``--keep`` of the
units of every layer removed by hand. Four ways to run each (SB3 SAC's: its own ``predict`` and the three
exported):

- ``sb3_predict``: ``model.predict(obs, deterministic=True)`` (SB3's preprocessing and numpy round trip included);
- ``eager``: the exported plain-torch module (:mod:`sb3_xinet.export`), ``torch.no_grad``;
- ``torchscript``: the exported ``.pt`` file loaded with ``torch.jit.load``;
- ``onnxruntime``: the exported ``.onnx`` file in ONNX Runtime (CPU provider, 1 intra-op thread).

Each is timed over ``--number`` calls per round, in interleaved rounds; we report the median over rounds.

    python -m benchmarks.actor_latency --rounds 15 --out benchmarks/results/actor_latency
"""

import argparse
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime
import torch as th
from stable_baselines3 import SAC
from torch import nn

from benchmarks.common import machine, plain_actor, remove_by_hand, write_results
from sb3_xinet import XiNetSAC
from sb3_xinet.export import deterministic_actor, latency_us, save_actor


def exported_actor(model: Any) -> nn.Module:
    return plain_actor(model) if isinstance(model, SAC) and not isinstance(model, XiNetSAC) else deterministic_actor(model)


def runners(model: Any, folder: Path) -> dict:
    """The four ways to compute an action for one observation."""
    eager = exported_actor(model)
    paths = save_actor(eager, model.observation_space.shape[0], folder / "actor")
    obs_np = np.zeros((1, model.observation_space.shape[0]), dtype=np.float32)
    obs = th.as_tensor(obs_np)
    scripted = th.jit.load(str(paths["torchscript"]))
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    session = onnxruntime.InferenceSession(str(paths["onnx"]), options, providers=["CPUExecutionProvider"])

    def run_eager() -> None:
        with th.no_grad():
            eager(obs)

    def run_scripted() -> None:
        with th.no_grad():
            scripted(obs)

    return {
        "sb3_predict": lambda: model.predict(obs_np[0], deterministic=True),
        "eager": run_eager,
        "torchscript": run_scripted,
        "onnxruntime": lambda: session.run(None, {"observation": obs_np}),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="Hopper-v5", help="the env of the sizes (and of the --pruned saves)")
    parser.add_argument("--pruned", nargs="+", default=None, help="pruned XiNetSAC saves (.zip)")
    parser.add_argument("--labels", nargs="+", default=None, help="a short name for each --pruned save")
    parser.add_argument("--keep", type=float, default=0.2)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--number", type=int, default=300)
    parser.add_argument("--out", default="benchmarks/results/actor_latency")
    args = parser.parse_args()
    th.set_num_threads(1)

    models: dict[str, Any] = {"sac": SAC("MlpPolicy", args.env, buffer_size=1, device="cpu")}
    models["dense"] = XiNetSAC(
        "MlpPolicy", args.env, buffer_size=1, cost_weight=0.0, policy_kwargs=dict(gates="none"), device="cpu"
    )
    if args.pruned:
        labels = args.labels or [f"pruned{index}" for index in range(len(args.pruned))]
        if len(labels) != len(args.pruned):
            parser.error("--labels needs one label per --pruned path")
        for label, path in zip(labels, args.pruned, strict=True):
            models[label] = XiNetSAC.load(path, device="cpu", buffer_size=1)
    else:
        models["pruned"] = XiNetSAC("MlpPolicy", args.env, buffer_size=1, device="cpu")
        remove_by_hand(models["pruned"], args.keep)
    with tempfile.TemporaryDirectory() as folder:
        runs = {}
        for name, model in models.items():
            (Path(folder) / name).mkdir()
            for how, run in runners(model, Path(folder) / name).items():
                runs[(name, how)] = run
        times: dict = {key: [] for key in runs}
        for _ in range(args.rounds):
            for key, run in runs.items():
                times[key].append(latency_us(run, rounds=1, number=args.number))

    rows = []
    for (name, how), values in times.items():
        actor = exported_actor(models[name])
        rows.append(
            dict(
                network=name,
                runtime=how,
                params=sum(p.numel() for p in actor.parameters()),
                layers=len(actor.dense) + len(actor.hidden) + 1,
                latency_us=round(float(np.median(values)), 1),
                vs_dense_eager=round(float(np.median(values)) / float(np.median(times[("dense", "eager")])), 2),
                vs_sac=round(float(np.median(values)) / float(np.median(times[("sac", how)])), 2),
            )
        )
    source = ", ".join(args.pruned) if args.pruned else f"dense with {args.keep:.0%} of every layer's units kept"
    title = (
        f"Single-observation actor latency on {args.env} (pruned: {source}; median of {args.rounds} interleaved rounds "
        f"of {args.number} calls; {machine(1)})"
    )
    columns = dict(network="network", runtime="runtime", params="parameters", layers="layers")
    columns.update(latency_us="latency us", vs_dense_eager="vs dense eager", vs_sac="vs SB3 SAC (same runtime)")
    print(write_results(args.out, rows, title, columns))


if __name__ == "__main__":
    main()
