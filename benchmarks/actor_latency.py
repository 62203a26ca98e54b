"""Single-observation latency of the deterministic actor (OFENet state branch + actor) on CPU, Hopper-v5 sizes (or
``--env``).

The networks: SB3 SAC's actor (256-256 on the raw observation, exported as the same plain-torch module), the
dense OFENet actor (6 x 40 OFENet units, 256-256 actor) and pruned ones: real pruned models (``--pruned PATH
...`` to XiNetSAC or XiNetTQC saves, named by ``--labels``) or, without them, the dense one with all but
``--keep`` of the units of every layer removed by hand. Five ways to run each (SB3 SAC's: its own ``predict`` and the four
exported):

- ``sb3_predict``: ``model.predict(obs, deterministic=True)`` (SB3's preprocessing and numpy round trip included);
- ``eager``: the plain-torch module the exports are written from (:mod:`sb3_xinet.plain_actor`), ``torch.no_grad``;
- ``exported_program``: the exported ``.pt2`` file loaded with ``torch.export.load`` (its ``.module()``);
- ``onnxruntime``: the exported ``.onnx`` file in ONNX Runtime (CPU provider, 1 intra-op thread);
- ``c``: the C actor (:mod:`sb3_xinet.c_actor`) compiled with ``cc -O2``, timed inside its own process (the
  driver's loop of ``--number`` calls: no Python between calls, as on a deployment target).

Each is timed over ``--number`` calls per round, in interleaved rounds; we report the median over rounds. The
table also gives each actor's object size (the compiled C source's text + data, from ``size``) and the C
actor's working memory.

    python -m benchmarks.actor_latency --rounds 15 --out benchmarks/results/actor_latency
"""

import argparse
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime
import torch as th
from stable_baselines3 import SAC

from benchmarks.common import machine, remove_by_hand, write_results
from sb3_xinet import XiNetSAC
from sb3_xinet.c_actor import c_compiler, compile_driver, work_floats, write_c
from sb3_xinet.export import latency_us, save_actor
from sb3_xinet.plain_actor import DeterministicActor, actor_of, load_model


def c_runner(actor: DeterministicActor, obs_dim: int, folder: Path, number: int) -> tuple[Callable[[], float], int]:
    """A call that runs ``number`` calls of the compiled C actor and returns their mean in microseconds, and the
    compiled object's text + data bytes."""
    executable = compile_driver(write_c(actor, obs_dim, folder)["c_source"].parent)
    obj = folder / "xinet.o"
    subprocess.run([c_compiler(), "-std=c99", "-O2", "-c", str(folder / "xinet.c"), "-o", str(obj)], check=True)
    sizes = subprocess.run(["size", str(obj)], capture_output=True, text=True, check=True).stdout
    text, data = sizes.splitlines()[1].split()[:2]
    obs = np.full(obs_dim, 0.1, dtype=np.float32).tobytes()

    def run() -> float:
        output = subprocess.run([str(executable), str(number)], input=obs, capture_output=True, check=True).stdout
        return float(output.split()[0]) / 1000

    return run, int(text) + int(data)


def runners(model: Any, folder: Path, number: int) -> tuple[dict[str, Callable[[], Any]], Callable[[], float], int]:
    """The four Python ways to compute an action for one observation, the C actor's timer and its object size."""
    eager = actor_of(model)
    obs_dim = model.observation_space.shape[0]
    paths = save_actor(eager, obs_dim, folder / "actor")
    obs_np = np.zeros((1, obs_dim), dtype=np.float32)
    obs = th.as_tensor(obs_np)
    program = th.export.load(paths["exported_program"]).module()
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    session = onnxruntime.InferenceSession(str(paths["onnx"]), options, providers=["CPUExecutionProvider"])

    def run_eager() -> None:
        with th.no_grad():
            eager(obs)

    def run_program() -> None:
        with th.no_grad():
            program(obs)

    python = {
        "sb3_predict": lambda: model.predict(obs_np[0], deterministic=True),
        "eager": run_eager,
        "exported_program": run_program,
        "onnxruntime": lambda: session.run(None, {"observation": obs_np}),
    }
    return python, *c_runner(eager, obs_dim, folder / "c", number)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="Hopper-v5", help="the env of the sizes (and of the --pruned saves)")
    parser.add_argument("--pruned", nargs="+", default=None, help="pruned XiNetSAC or XiNetTQC saves (.zip)")
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
            models[label] = load_model(path, buffer_size=1)
    else:
        models["pruned"] = XiNetSAC("MlpPolicy", args.env, buffer_size=1, device="cpu")
        remove_by_hand(models["pruned"], args.keep)
    with tempfile.TemporaryDirectory() as folder:
        runs, c_runs, object_bytes = {}, {}, {}
        for name, model in models.items():
            (Path(folder) / name).mkdir()
            python, c_runs[name], object_bytes[name] = runners(model, Path(folder) / name, args.number)
            runs.update({(name, how): run for how, run in python.items()})
        times: dict = {key: [] for key in [*runs, *((name, "c") for name in models)]}
        for _ in range(args.rounds):
            for key, run in runs.items():
                times[key].append(latency_us(run, rounds=1, number=args.number))
            for name, run in c_runs.items():
                times[(name, "c")].append(run())

    rows = []
    for (name, how), values in times.items():
        actor = actor_of(models[name])
        rows.append(
            dict(
                network=name,
                runtime=how,
                params=sum(p.numel() for p in actor.parameters()),
                layers=len(actor.dense) + len(actor.hidden) + 1,
                c_object_bytes=object_bytes[name],
                c_work_bytes=4 * sum(work_floats(actor, models[name].observation_space.shape[0])),
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
    columns.update(c_object_bytes="C object bytes", c_work_bytes="C stack bytes")
    columns.update(latency_us="latency us", vs_dense_eager="vs dense eager", vs_sac="vs SB3 SAC (same runtime)")
    print(write_results(args.out, rows, title, columns))


if __name__ == "__main__":
    main()
