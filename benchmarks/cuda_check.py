"""XiNetSAC on a GPU: pruning, exact counts, a live actor, saves and reloads mid-pruning and across the end.

A Pendulum-v1 run at a high cost weight (c = 20) on ``--device``, saved mid-pruning (with its replay buffer),
reloaded and resumed across ``pruning_end`` (the fold), saved again and reloaded on the CPU. Prints one line per
check and exits non-zero if one fails; no host synchronisation is added to the training step for it.

    python -m benchmarks.cuda_check --device cuda
"""

import argparse
import sys
import tempfile
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch as th

from sb3_xinet import XiNetSAC
from sb3_xinet.common.presets import SHORT_PRUNING
from sb3_xinet.cost import count_parameters

SETTINGS = {**SHORT_PRUNING, "pruning_end": 450}
FAILED: list[str] = []


def check(name: str, ok: bool, detail: str = "") -> None:
    print(f"{'PASS' if ok else 'FAIL'} {name} {detail}", flush=True)
    if not ok:
        FAILED.append(name)


def units(model: XiNetSAC) -> dict[str, list[int]]:
    return {name: list(block.units) for name, block in model.policy.gated_blocks().items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    args = parser.parse_args()
    obs = np.random.default_rng(1).uniform(-1, 1, size=(256, 3)).astype(np.float32)

    model = XiNetSAC("MlpPolicy", "Pendulum-v1", device=args.device, **SETTINGS)
    model.learn(300)
    check("on the device", next(model.policy.parameters()).device.type == th.device(args.device).type)
    summary = model.pruning_summary()
    check("pruned mid-run", summary.params < summary.initial_params, f"{summary.params} of {summary.initial_params}")
    check("summary counts the networks", summary.params == count_parameters(model.policy.networks().values()))
    actions, _ = model.predict(obs, deterministic=True)
    check("the actor is alive", float(actions.std()) > 0, f"action std {actions.std():.4f}")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder)
        model.save(path / "mid")
        model.save_replay_buffer(path / "buffer")
        resumed = XiNetSAC.load(path / "mid", env=gym.make("Pendulum-v1"), device=args.device)
        resumed.load_replay_buffer(path / "buffer")
        check("reload mid-pruning", units(resumed) == units(model) and not resumed.pruning_ended)
        same = np.allclose(resumed.predict(obs, deterministic=True)[0], actions, atol=1e-6)
        check("reloaded actions", same)
        before = units(resumed)
        resumed.learn(300, reset_num_timesteps=False)
        after = units(resumed)
        grew = [name for name in before if any(a > b for a, b in zip(after[name], before[name], strict=False))]
        check("resumed across the end", resumed.pruning_ended and resumed.num_timesteps == 600 and not grew)
        check("no gate left", not any(block.gates() for block in resumed.policy.gated_blocks().values()))
        folded_actions, _ = resumed.predict(obs, deterministic=True)
        check("the folded actor is alive", float(folded_actions.std()) > 0)
        resumed.save(path / "folded")
        on_cpu = XiNetSAC.load(path / "folded", device="cpu")
        check("the folded save reloads on the CPU", units(on_cpu) == after)
        cpu_actions, _ = on_cpu.predict(obs, deterministic=True)
        check("same actions on the CPU", np.allclose(cpu_actions, folded_actions, atol=1e-4))
    print("all checks passed" if not FAILED else f"failed: {FAILED}", flush=True)
    sys.exit(1 if FAILED else 0)


if __name__ == "__main__":
    main()
