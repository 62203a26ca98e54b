"""The training-math fingerprint: seeded short runs whose results must not change unless the math does.

Each run trains a tiny model on Pendulum-v1 through the warm-up, OFENet's pre-training, the regularizer, several
removals and the fold at ``pruning_end``, then trains on as plain OFENet-SAC/TQC. The fingerprint of a run is
what it computed: the SHA-256 of every theta just before the fold and of every final parameter and buffer, the
units removed at each removal, and every value logged under ``train/``, ``xinet/`` and ``rollout/``.

Bit-for-bit results need one code path through the math libraries: the run is made in a fresh process with one
thread and with PyTorch's, MKL's and oneDNN's kernels pinned to their AVX2 versions (:data:`PINNED`). That gives
the same bits on the Intel Xeon machines we have run it on, but not across CPU vendors: on an AMD EPYC machine the
pinned run differs from the Intel reference from the first gradient steps on (losses about 1e-3 apart at the first
log). So there is one reference per CPU vendor (:data:`REFERENCES`, chosen by ``vendor_id`` in /proc/cpuinfo),
each written from the same training code; on a CPU without one the test is skipped and says how to write one.

    python -m tests.fingerprint            # print the fingerprints of this checkout as JSON
    python -m tests.fingerprint --write    # make them this CPU vendor's reference

Rewrite a reference only on purpose, when a change is meant to change what training computes (then rewrite every
vendor's, on a machine of that vendor), and say why in the commit that does it.
"""

import argparse
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

REFERENCES = {
    "GenuineIntel": Path(__file__).with_name("fingerprint_reference.json"),
    "AuthenticAMD": Path(__file__).with_name("fingerprint_reference_amd.json"),
}
# environment of the fingerprint's process: one thread, and one kernel variant on any x86-64 CPU with AVX2
PINNED = {
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "ATEN_CPU_CAPABILITY": "avx2",
    "MKL_CBWR": "AVX2,STRICT",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
}
# the runs' settings, frozen here: the shared test settings may change, the fingerprint's may not
SETTINGS: dict[str, Any] = dict(
    learning_starts=100,
    ofenet_pretrain_steps=50,
    batch_size=32,
    pruning_start=150,
    pruning_end=350,
    prune_freq=25,
    cost_weight=20.0,
    loss_scale_window=100,
    policy_kwargs=dict(
        net_arch=[32, 32],
        ofenet_kwargs=dict(state_units=[8, 8, 8], state_action_units=[8, 8, 8]),
        theta_learning_rate=0.05,
    ),
    seed=0,
    device="cpu",
)
STEPS = 500
THETA_STEP = 340  # the thetas are read here, before the fold at pruning_end
TIME_CALIBRATION = dict(per_mac=2e-10, per_unit=2e-8, per_layer=4e-6, fixed=1e-3, batch_size=32, device="cpu")
RUNS: dict[str, dict[str, Any]] = {
    "XiNetSAC-params": dict(algo="XiNetSAC"),
    "XiNetSAC-time": dict(algo="XiNetSAC", cost_model="time", time_calibration=TIME_CALIBRATION),
    "XiNetTQC-params": dict(algo="XiNetTQC"),
    "XiNetTQC-time": dict(algo="XiNetTQC", cost_model="time", time_calibration=TIME_CALIBRATION),
    "XiNetSAC-reinforce": dict(algo="XiNetSAC", policy_kwargs=dict(gate_estimator="reinforce")),
}
LOGGED = ("train/", "xinet/", "rollout/")


def digest(tensors: dict[str, Any]) -> dict[str, str]:
    """SHA-256 of each tensor's bytes (with its shape), by name."""
    found = {}
    for name, value in sorted(tensors.items()):
        data = value.detach().cpu().contiguous().numpy().tobytes()
        found[name] = hashlib.sha256(str(tuple(value.shape)).encode() + data).hexdigest()
    return found


def run(name: str) -> dict[str, Any]:
    """Train the configuration ``name`` of :data:`RUNS` and return its fingerprint."""
    import torch as th
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.logger import KVWriter, Logger

    import sb3_xinet
    from sb3_xinet.callbacks import XiNetPruningCallback

    th.set_num_threads(1)
    config = dict(RUNS[name])
    algo = getattr(sb3_xinet, config.pop("algo"))
    policy_kwargs = {**SETTINGS["policy_kwargs"], **config.pop("policy_kwargs", {})}
    model = algo("MlpPolicy", "Pendulum-v1", **{**SETTINGS, **config, "policy_kwargs": policy_kwargs})

    logged: list[dict[str, Any]] = []

    class Recorder(KVWriter):
        def write(self, key_values: dict[str, Any], key_excluded: dict[str, Any], step: int = 0) -> None:
            logged.append({key: float(value) for key, value in sorted(key_values.items()) if key.startswith(LOGGED)})

    class Thetas(BaseCallback):
        thetas: dict[str, str] = {}

        def _on_step(self) -> bool:
            if self.num_timesteps == THETA_STEP:
                named = self.model.policy.named_parameters()
                self.thetas = digest({key: value for key, value in named if key.endswith("theta")})
            return True

    model.set_logger(Logger(folder=None, output_formats=[Recorder()]))
    thetas, pruning = Thetas(), XiNetPruningCallback()
    model.learn(STEPS, callback=[thetas, pruning], log_interval=1)
    return {
        "thetas_before_fold": thetas.thetas,
        "final_state": digest(model.policy.state_dict()),
        "removals": [[step, removed] for step, removed in pruning.removals],
        "logged": logged,
    }


def cpu_vendor() -> str:
    """The CPU's ``vendor_id`` (e.g. GenuineIntel, AuthenticAMD), or "unknown" where /proc/cpuinfo does not say."""
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.exists() else []
    return next((line.split(":", 1)[1].strip() for line in lines if line.startswith("vendor_id")), "unknown")


def reference() -> Path | None:
    """The reference of this machine's CPU vendor (None where there is none)."""
    return REFERENCES.get(cpu_vendor())


def fingerprints() -> dict[str, Any]:
    """The fingerprints of every run of :data:`RUNS`, computed in a fresh, pinned process."""
    environment = {**os.environ, **PINNED}
    root = Path(__file__).resolve().parent.parent
    result = subprocess.run(
        [sys.executable, "-m", "tests.fingerprint", "--inside"],
        env=environment,
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"The fingerprint run failed:\n{result.stderr[-4000:]}")
    return json.loads(result.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--write", action="store_true", help="write this CPU vendor's reference")
    parser.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)  # the pinned process itself
    args = parser.parse_args()
    if args.inside:
        json.dump({name: run(name) for name in RUNS}, sys.stdout)
        return
    found = fingerprints()
    if args.write:
        path = reference()
        if path is None:
            parser.error(f"no reference file is named for CPU vendor {cpu_vendor()!r}: add one to REFERENCES")
        path.write_text(json.dumps(found, indent=1, sort_keys=True) + "\n")
        print(f"wrote {path}")
    else:
        print(json.dumps(found, indent=1, sort_keys=True))


if __name__ == "__main__":
    main()
