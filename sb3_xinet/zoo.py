"""RL Zoo integration: the algorithm keys, the packaged hyperparameter files, their validation, the Optuna sampler.

Four keys: ``xinet_sac`` (XiNetSAC), ``xinet_tqc`` (XiNetTQC), and their dense baselines ``ofenet_sac`` and
``ofenet_tqc`` (the same classes, whose packaged YAML sets ``gates="none"`` and ``cost_weight: 0``). The zoo
looks for ``rl_zoo3/hyperparams/<algo>.yml``, which does not exist for them, so the entry points pass
``--conf-file`` with the packaged file unless the user gave one. The zoo hands every YAML key verbatim to the
constructor, so an unknown key would surface as a bare ``TypeError`` deep in the zoo: :func:`check_entry` names
the key, the env and the file first.
"""

import argparse
import inspect
from collections.abc import Callable
from importlib.resources import files
from pathlib import Path
from typing import Any

import optuna
import rl_zoo3
import rl_zoo3.exp_manager
import rl_zoo3.hyperparams_opt
import yaml

from sb3_xinet.callbacks import PARALLEL_TRAINING
from sb3_xinet.common.algorithm import XINET_ARGUMENTS, XiNetAlgorithm, check_xinet_arguments
from sb3_xinet.policies import XiNetPolicy
from sb3_xinet.xinet_sac import XiNetSAC
from sb3_xinet.xinet_tqc import XiNetTQC

ALGOS: dict[str, type[XiNetAlgorithm]] = {
    "xinet_sac": XiNetSAC,
    "ofenet_sac": XiNetSAC,
    "xinet_tqc": XiNetTQC,
    "ofenet_tqc": XiNetTQC,
}
# the keys whose hyperparameters the Optuna sampler searches (the dense baselines have no XiNet knobs)
PRUNING_ALGOS = ("xinet_sac", "xinet_tqc")

# keys the zoo consumes itself instead of passing them to the algorithm (rl_zoo3 2.9 exp_manager)
ZOO_KEYS = {
    "n_timesteps",
    "policy",
    "n_envs",
    "normalize",
    "frame_stack",
    "env_wrapper",
    "vec_env_wrapper",
    "callback",
    "monitor_kwargs",
    "env_kwargs",
    "noise_type",
    "noise_std",
}
PRUNING_KEYS = set(XINET_ARGUMENTS)
# our hyperparameters whose values are words
STRING_KEYS = {"cost_model"}
# constructor arguments the zoo sets itself
ZOO_SET = {"self", "policy", "env", "tensorboard_log", "seed", "verbose", "device", "_init_setup_model"}


def default_config(algo: str) -> Path:
    """The packaged hyperparameter file of one of our keys."""
    return Path(str(files("sb3_xinet") / "hyperparams" / f"{algo}.yml"))


class OneTransitionBuffer:
    """Mixed into an algorithm for enjoy and record_video: its ``load`` allocates a 1-transition replay buffer.

    The zoo passes ``buffer_size=1`` at load time only to the off-policy algorithms it knows (a list local to
    ``rl_zoo3.enjoy``); without it, loading would allocate the saved buffer size (1M transitions).
    """

    @classmethod
    def load(cls, path, env=None, device="auto", custom_objects=None, print_system_info=False, force_reset=True, **kwargs):
        kwargs.setdefault("buffer_size", 1)
        return super().load(path, env, device, custom_objects, print_system_info, force_reset, **kwargs)  # type: ignore[misc]


class XiNetSACForEvaluation(OneTransitionBuffer, XiNetSAC):
    """XiNetSAC for the zoo's evaluation commands (:class:`OneTransitionBuffer`)."""


class XiNetTQCForEvaluation(OneTransitionBuffer, XiNetTQC):
    """XiNetTQC for the zoo's evaluation commands (:class:`OneTransitionBuffer`)."""


FOR_EVALUATION: dict[type, type] = {XiNetSAC: XiNetSACForEvaluation, XiNetTQC: XiNetTQCForEvaluation}


def register(evaluation: bool = False) -> None:
    """Add our keys to the zoo's algorithm table (the dict object train, enjoy and record_video share)."""
    rl_zoo3.ALGOS.update({algo: FOR_EVALUATION[cls] if evaluation else cls for algo, cls in ALGOS.items()})
    for algo in PRUNING_ALGOS:
        rl_zoo3.hyperparams_opt.HYPERPARAMS_SAMPLER.setdefault(algo, make_sampler({}))
        rl_zoo3.hyperparams_opt.HYPERPARAMS_CONVERTER.setdefault(algo, make_converter({}))


def parse_zoo_args(argv: list[str]) -> argparse.Namespace:
    """The few zoo flags we need to look at, parsed the way the zoo parses them (abbreviations included)."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--algo", default="ppo")
    parser.add_argument("--env", default="CartPole-v1")
    parser.add_argument("-conf", "--conf-file", default=None)
    parser.add_argument("-optimize", "--optimize-hyperparameters", action="store_true", default=False)
    parser.add_argument("-params", "--hyperparams", nargs="+", default=[])
    return parser.parse_known_args(argv)[0]


def with_one_thread(argv: list[str]) -> list[str]:
    """``argv`` plus ``--num-threads 1`` unless a thread count was given.

    The zoo's default keeps torch's (one thread per core). These networks are small: more threads buy little,
    and beside any other busy process they collapse (SB3's SAC on Pendulum-v1 fell from 80.8 to 5.3 env steps/s
    with 2 threads on a 2-core machine next to one busy process). Pass ``--num-threads N`` to choose.
    """
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--num-threads", type=int, default=None)
    if parser.parse_known_args(argv)[0].num_threads is None:
        return [*argv, "--num-threads", "1"]
    return argv


def with_quoted_words(argv: list[str]) -> list[str]:
    """``argv`` with the bare words of our string-valued ``-params`` quoted: the zoo evaluates each value as
    Python, so ``cost_model:time`` would name the ``time`` module; it means ``cost_model:'time'``."""
    quoted, in_params = [], False
    for arg in argv:
        if arg.startswith("-") and ":" not in arg:
            in_params = arg in ("-params", "--hyperparams")
        elif in_params and ":" in arg:
            key, value = arg.split(":", 1)
            if key in STRING_KEYS and value.isidentifier():
                arg = f"{key}:{value!r}"
        quoted.append(arg)
    return quoted


def with_default_config(argv: list[str]) -> list[str]:
    """``argv`` plus ``--conf-file <packaged yml>`` when the algo is ours and no config file was given."""
    args = parse_zoo_args(argv)
    if args.algo in ALGOS and args.conf_file is None:
        return [*argv, "--conf-file", str(default_config(args.algo))]
    return argv


def load_entry(config: str | Path, env_id: str) -> dict[str, Any] | None:
    """The YAML entry the zoo would use for ``env_id`` (its own fallback: the env id, then ``default``)."""
    path = Path(config)
    if path.suffix not in (".yml", ".yaml") or not path.exists():
        return None  # a python config or a module path: the zoo reads it, nothing to check here
    with path.open() as handle:
        entries = yaml.load(handle, Loader=yaml.UnsafeLoader) or {}  # the zoo's own loader (!!python tags)
    entry = entries.get(env_id, entries.get("default"))
    if entry is None:
        raise ValueError(f"{path} has no entry for {env_id} and no 'default' entry: add one (see hyperparams/README.md)")
    return entry


def check_entry(entry: dict[str, Any], env_id: str, config: str | Path, algo: str = "xinet_sac") -> None:
    """Raise a ValueError that names any key or ``policy_kwargs`` key the algorithm of ``algo`` would not accept,
    or a bad value of its XiNet arguments (SAC's or TQC's are checked by them when the zoo builds the model)."""
    cls = ALGOS[algo]
    policy_class = cls.policy_aliases["MlpPolicy"]
    accepted = set(inspect.signature(cls.__init__).parameters) - ZOO_SET
    where = f"entry {env_id!r} of {config}"
    for key in entry:
        if key not in accepted | ZOO_KEYS:
            raise ValueError(f"Unknown hyperparameter {key!r} in {where}; {cls.__name__} accepts {sorted(accepted)}")
    try:
        checked = {*PRUNING_KEYS, "learning_starts"}
        defaults = {name: p.default for name, p in inspect.signature(cls.__init__).parameters.items() if name in checked}
        check_xinet_arguments(**{**defaults, **{key: value for key, value in entry.items() if key in checked}})
    except ValueError as error:
        raise ValueError(f"Bad value in {where}: {error}") from error
    policy_kwargs = entry.get("policy_kwargs", {})
    if isinstance(policy_kwargs, str):  # the zoo evaluates strings; check the dict they give
        policy_kwargs = eval(policy_kwargs, vars(rl_zoo3.exp_manager))  # what the zoo itself does with it
    if not isinstance(policy_kwargs, dict):
        raise ValueError(f"policy_kwargs in {where} must be a mapping, got {policy_kwargs!r}")
    policy_accepted = {
        name
        for klass in policy_class.__mro__
        if issubclass(klass, XiNetPolicy)
        for name in inspect.signature(klass.__init__).parameters
    } - {"self", "observation_space", "action_space", "args", "kwargs"}
    for key in policy_kwargs:
        if key not in policy_accepted:
            raise ValueError(
                f"Unknown policy_kwargs key {key!r} in {where}; {policy_class.__name__} accepts {sorted(policy_accepted)}"
            )


def make_sampler(policy_kwargs: dict[str, Any]) -> Callable[[optuna.Trial, int, int, dict], dict[str, Any]]:
    """The Optuna sampler of the XiNet knobs, merging into the YAML's ``policy_kwargs``.

    The zoo replaces ``policy_kwargs`` wholesale with a sampled one, so the sampler is built with the YAML
    entry's ``policy_kwargs`` and returns them updated. Sampled: the cost weight c (log-uniform 0.1-10), the
    prune threshold, the thetas' learning rate and OFENet's width (units per layer, same number of layers).
    """

    def sample_xinet_params(trial: optuna.Trial, n_actions: int, n_envs: int, additional_args: dict) -> dict[str, Any]:
        sampled = {
            "cost_weight": trial.suggest_float("cost_weight", 0.1, 10.0, log=True),
            "prune_threshold": trial.suggest_categorical("prune_threshold", [1e-3, 1e-2, 5e-2]),
            "theta_learning_rate": trial.suggest_float("theta_learning_rate", 1e-4, 1e-2, log=True),
            "ofenet_units": trial.suggest_categorical("ofenet_units", [20, 40, 60]),
        }
        return make_converter(policy_kwargs)(sampled)

    return sample_xinet_params


def make_converter(policy_kwargs: dict[str, Any]) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """The zoo's converter from a trial's parameters (as Optuna stores them) to the XiNet hyperparameters.

    The sampler goes through it, and so does ``--trial-id`` / replaying a study's best trial, which reads the
    stored parameters back: ``theta_learning_rate`` and ``ofenet_units`` go into the YAML's ``policy_kwargs``.
    """

    def convert_xinet_params(params: dict[str, Any]) -> dict[str, Any]:
        hyperparams = dict(params)
        ofenet_kwargs = dict(policy_kwargs.get("ofenet_kwargs", {}))
        kwargs = {**policy_kwargs, "ofenet_kwargs": ofenet_kwargs}
        if "ofenet_units" in hyperparams:
            units = hyperparams.pop("ofenet_units")
            n_layers = len(ofenet_kwargs.get("state_units", [40] * 6))
            ofenet_kwargs.update(state_units=[units] * n_layers, state_action_units=[units] * n_layers)
        if "theta_learning_rate" in hyperparams:
            kwargs["theta_learning_rate"] = hyperparams.pop("theta_learning_rate")
        return {**hyperparams, "policy_kwargs": kwargs}

    return convert_xinet_params


def refuse_parallel_training(args: argparse.Namespace, entry: dict[str, Any] | None) -> None:
    """Refuse rl_zoo3's ``ParallelTrainCallback`` (in ``-params`` or the YAML entry) before the zoo starts: refused
    later, by ``learn()``, the zoo's clean-up of the callback that never started adds a second traceback."""
    given = [value for value in args.hyperparams if value.startswith("callback:")]
    if "ParallelTrainCallback" in " ".join(given) + str((entry or {}).get("callback", "")):
        raise ValueError(PARALLEL_TRAINING)


def prepare(argv: list[str]) -> list[str]:
    """Register our keys, add the packaged config, check its entry for the env; return the argv for the zoo."""
    register()
    argv = with_quoted_words(with_one_thread(with_default_config(argv)))
    args = parse_zoo_args(argv)
    if args.optimize_hyperparameters and args.algo in set(ALGOS) - set(PRUNING_ALGOS):
        raise ValueError(
            f"--optimize samples the XiNet knobs: use it with --algo {' or '.join(PRUNING_ALGOS)}, not the dense baseline"
        )
    if args.algo in ALGOS:
        refuse_parallel_training(args, load_entry(args.conf_file, args.env) if args.conf_file else None)
    if args.algo in ALGOS and args.conf_file is not None:
        entry = load_entry(args.conf_file, args.env)
        if entry is not None:
            check_entry(entry, args.env, args.conf_file, args.algo)
            policy_kwargs = entry.get("policy_kwargs", {})
            if isinstance(policy_kwargs, dict):
                rl_zoo3.hyperparams_opt.HYPERPARAMS_SAMPLER[args.algo] = make_sampler(policy_kwargs)
                rl_zoo3.hyperparams_opt.HYPERPARAMS_CONVERTER[args.algo] = make_converter(policy_kwargs)
    return argv
