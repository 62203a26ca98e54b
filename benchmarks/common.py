"""What the benchmark scripts share: the configurations they compare (named as the RL Zoo keys), the class each one
trains, parameter counts, the sizing of small-from-scratch models, SB3 SAC's actor as the exported module, and the
reading and writing of result files."""

import csv
import json
import os
import platform
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch as th
from sb3_contrib import TQC
from stable_baselines3 import SAC

from sb3_xinet import XiNetSAC, XiNetTQC
from sb3_xinet.blocks import ACTOR, CRITIC, OFENET, BlockEntry, branch_role


@dataclass(frozen=True)
class Config:
    """One configuration of a comparison.

    :param label: its name in tables and plots
    :param algo_class: the class it trains
    :param kwargs: its constructor arguments besides the shared ones (the small models' widths come later)
    :param family: ``sac`` or ``tqc``: the configurations it is held against share it
    :param role: ``plain`` (SB3's SAC, sb3-contrib's TQC), ``dense``, ``xinet`` or ``small`` (OFENet at smaller
        widths, trained from scratch without gates)
    """

    label: str
    algo_class: type
    kwargs: dict[str, Any] = field(default_factory=dict)
    family: str = "sac"
    role: str = "xinet"


DENSE = dict(cost_weight=0.0, policy_kwargs=dict(gates="none"))
CONFIGS: dict[str, Config] = {
    "sac": Config("SB3 SAC", SAC, role="plain"),
    "ofenet_sac": Config("dense OFENet-SAC", XiNetSAC, DENSE, role="dense"),
    "xinet_sac": Config("XiNetSAC", XiNetSAC),
    "xinet_sac_time": Config("XiNetSAC (time cost)", XiNetSAC, dict(cost_model="time")),
    "small_ofenet_sac": Config("small OFENet-SAC", XiNetSAC, role="small"),
    "tqc": Config("sb3-contrib TQC", TQC, family="tqc", role="plain"),
    "ofenet_tqc": Config("dense OFENet-TQC", XiNetTQC, DENSE, family="tqc", role="dense"),
    "xinet_tqc": Config("XiNetTQC", XiNetTQC, family="tqc"),
    "small_ofenet_tqc": Config("small OFENet-TQC", XiNetTQC, family="tqc", role="small"),
}
# the names of result files written before the configurations were named as the zoo keys
LEGACY = {
    "dense": "ofenet_sac",
    "xinet": "xinet_sac",
    "xinet_time": "xinet_sac_time",
    "small": "small_ofenet_sac",
    "dense_tqc": "ofenet_tqc",
    "small_tqc": "small_ofenet_tqc",
}
OFENET_LAYERS = 6  # layers per branch of the small models (OFENet's Hopper configuration)
Widths = tuple[int, int, int]  # a small model's (ofenet, actor, critic) units per layer


def config_name(name: str) -> str:
    """A configuration's name, from its name in any result file (old names included)."""
    name = LEGACY.get(name, name)
    if name not in CONFIGS:
        raise ValueError(f"Unknown configuration {name!r}: expected one of {list(CONFIGS)}")
    return name


def related(name: str, role: str) -> str:
    """The configuration of ``role`` in ``name``'s family (e.g. the dense one of ``xinet_tqc``: ``ofenet_tqc``)."""
    family = CONFIGS[config_name(name)].family
    return next(key for key, config in CONFIGS.items() if config.family == family and config.role == role)


def parse_widths(text: str) -> Widths:
    """The (ofenet, actor, critic) widths of a small model from ``"ofenet,actor,critic"`` (``--small-widths``)."""
    ofenet, actor, critic = (int(width) for width in text.split(","))
    return ofenet, actor, critic


def small_kwargs(ofenet: int, actor: int, critic: int) -> dict[str, Any]:
    """The policy keywords of a small model: ``ofenet`` units in every OFENet layer, two hidden layers of
    ``actor`` units in the actor and of ``critic`` units in each critic."""
    return dict(
        gates="none",
        ofenet_kwargs=dict(state_units=[ofenet] * OFENET_LAYERS, state_action_units=[ofenet] * OFENET_LAYERS),
        net_arch=dict(pi=[actor] * 2, qf=[critic] * 2),
    )


def config_kwargs(name: str, shared: dict[str, Any], small_widths: Widths | None = None) -> dict[str, Any]:
    """The constructor arguments of a configuration: ``shared`` (``learning_starts``, ``seed`` ...; for the XiNet
    classes also ``ofenet_pretrain_steps``, ``cost_weight`` ...), its own, and a small model's widths."""
    config = CONFIGS[config_name(name)]
    if config.role == "plain":
        return {key: value for key, value in shared.items() if key in ("learning_starts", "seed", "device", "verbose")}
    kwargs = {**shared, **config.kwargs}
    if config.role == "small":
        if small_widths is None:
            raise ValueError(f"{name} needs its widths (ofenet, actor, critic)")
        kwargs.update(cost_weight=0.0, policy_kwargs=small_kwargs(*small_widths))
    return kwargs


def build(name: str, env: str, shared: dict[str, Any], small_widths: Widths | None = None) -> Any:
    """A new model of a configuration."""
    return CONFIGS[config_name(name)].algo_class("MlpPolicy", env, **config_kwargs(name, shared, small_widths))


def network_size(model: Any) -> tuple[int, dict[str, list[int]]]:
    """(parameters of the trained networks, units alive per gated block): OFENet + actor + critics for the XiNet
    classes (their pruning summary), actor + critics for SB3's SAC and sb3-contrib's TQC."""
    if isinstance(model, XiNetSAC | XiNetTQC):
        summary = model.pruning_summary()
        units: dict[str, list[int]] = {}
        for network in summary.networks:
            for layer in network.layers:
                units.setdefault(layer.block, []).append(layer.units)
        return summary.params, units
    return sum(p.numel() for net in (model.actor, model.critic) for p in net.parameters()), {}


def ofenet_layers(model: Any) -> str:
    """OFENet layers left, ``"<state>+<state-action>"`` (empty for SB3's SAC and sb3-contrib's TQC)."""
    if not isinstance(model, XiNetSAC | XiNetTQC):
        return ""
    return "+".join(str(len(block.layers)) for block in model.policy.ofenet.blocks().values())


def network_params(env: str, policy_kwargs: dict[str, Any], algo_class: type = XiNetSAC) -> dict[str, int]:
    """Parameters per network (``ofenet``, ``actor``, ``critic<i>``) of a dense OFENet model built with these policy
    keywords."""
    model = algo_class("MlpPolicy", env, buffer_size=1, device="cpu", policy_kwargs=dict({"gates": "none"}, **policy_kwargs))
    return {network.name: network.params for network in model.pruning_summary().networks}


def architecture_from_units(units: dict[str, list[int]]) -> dict[str, Any]:
    """The ``architecture`` policy keyword of the widths a curve records; a removed DenseNet layer (0 units)
    is left out, the others keep their layer index."""
    ofenet = {}
    for branch in ("state", "state_action"):
        widths = units[branch_role(branch)]
        ofenet[f"{branch}_units"] = [width for width in widths if width > 0]
        ofenet[f"{branch}_layer_ids"] = [i for i, width in enumerate(widths) if width > 0]
    critics = sorted(name for name in units if BlockEntry.role_of(name) == CRITIC)
    return dict(ofenet=ofenet, actor=units[ACTOR], critics=[units[name] for name in critics])


def closest_width(count: Callable[[int], int], target: float, high: int) -> int:
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


def match_xinet(sweep: Path, env: str, name: str = "xinet_sac") -> tuple[Widths, dict[str, float], dict[str, int]]:
    """The small model sized to the finished runs of the XiNet configuration ``name`` of ``env`` in ``sweep``,
    network by network: OFENet first (its output is the heads' input), then the actor and the critics at that
    OFENet. Returns its (ofenet, actor, critic) widths, the XiNet runs' mean final parameters per network and the
    small model's."""
    algo_class = CONFIGS[name].algo_class
    runs = [run for run in read_runs(sweep) if run["env"] == env and run["algo"] == name]
    if not runs:
        raise ValueError(f"no finished {name} run of {env} in {sweep / 'runs.csv'}")
    counts = [
        network_params(env, dict(architecture=architecture_from_units(final_units(sweep, run))), algo_class) for run in runs
    ]
    target = {network: statistics.mean(count[network] for count in counts) for network in counts[0]}
    critics = [network for network in target if network not in (OFENET, ACTOR)]
    critic_target = statistics.mean(target[network] for network in critics)

    def count(ofenet: int, actor: int, critic: int) -> dict[str, int]:
        return network_params(env, small_kwargs(ofenet, actor, critic), algo_class)

    ofenet = closest_width(lambda w: count(w, 1, 1)[OFENET], target[OFENET], 40)
    actor = closest_width(lambda w: count(ofenet, w, 1)[ACTOR], target[ACTOR], 256)
    critic = closest_width(lambda w: count(ofenet, 1, w)[critics[0]], critic_target, 256)
    return (ofenet, actor, critic), target, count(ofenet, actor, critic)


def remove_by_hand(model: XiNetSAC | XiNetTQC, keep: float) -> None:
    """Drive the thetas of all but ``keep`` of the units of every layer to 0, then prune them."""
    with th.no_grad():
        for block in model.policy.gated_blocks().values():
            for gate in block.gates():
                gate.theta[max(1, round(keep * gate.n_units)) :] = 0.0
    model.prune()


def machine(threads: int) -> str:
    """The machine a measurement ran on, for its table's title."""
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {threads} torch thread(s)"


def read_rows(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def read_runs(sweep: Path) -> list[dict[str, str]]:
    """The finished runs of a sweep (``runs.csv``), configurations named as today."""
    return [{**row, "algo": config_name(row["algo"])} for row in read_rows(sweep / "runs.csv")]


def curve_path(sweep: Path, run: dict[str, str]) -> Path:
    """A run's curve; older sweeps name it by the configuration's old name."""
    path = sweep / "curves" / f"{run['env']}_{run['algo']}_{run['seed']}.csv"
    if not path.exists():
        old = {new: old for old, new in LEGACY.items()}.get(run["algo"], run["algo"])
        path = sweep / "curves" / f"{run['env']}_{old}_{run['seed']}.csv"
    return path


def tail_score(curve: list[dict[str, str]], steps: int, tail: float = 0.2) -> float:
    """A run's score: the mean return of its periodic evaluations (``curve``, the final evaluation left out) after
    ``(1 - tail) * steps``. One checkpoint swings by hundreds on the MuJoCo tasks; the mean of the last ones less."""
    returns = [float(row["return_mean"]) for row in curve if int(row["step"]) > (1 - tail) * steps]
    if not returns:
        raise ValueError(f"no evaluation in the last {tail:.0%} of {steps} steps")
    return float(np.mean(returns))


def final_units(sweep: Path, run: dict[str, str]) -> dict[str, list[int]]:
    """Units alive per gated block at the end of a run (its curve's last row)."""
    return json.loads(read_rows(curve_path(sweep, run))[-1]["units"] or "{}")


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation of two samples without ties (scipy is not among our dependencies for this)."""
    rank_a, rank_b = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(rank_a, rank_b)[0, 1])


def format_cell(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) else str(value)


def write_results(out: str | Path, rows: list[dict[str, Any]], title: str, columns: dict[str, str]) -> str:
    """Write ``<out>.csv`` (every field) and ``<out>.md`` (``title`` and the ``columns``, key -> header);
    return the Markdown."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.with_suffix(".csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    lines = [
        title,
        "",
        "| " + " | ".join(columns.values()) + " |",
        "|" + "---|" * len(columns),
        *("| " + " | ".join(format_cell(row[key]) for key in columns) + " |" for row in rows),
    ]
    text = "\n".join(lines) + "\n"
    out.with_suffix(".md").write_text(text)
    return text
