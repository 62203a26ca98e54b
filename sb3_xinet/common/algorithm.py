"""The XiNet machinery every algorithm shares (:class:`XiNetAlgorithm`), mixed into SB3's SAC and sb3-contrib's TQC:
the XiNet arguments and the pruning state they start, pruning and its end, the summary, save and load (saves of
older versions included). The training step is :class:`~sb3_xinet.common.training.XiNetTraining`'s.
"""

import io
import pathlib
import warnings
from typing import Any, ClassVar, TypeVar

import torch as th
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.save_util import load_from_zip_file
from stable_baselines3.common.type_aliases import GymEnv, MaybeCallback
from stable_baselines3.common.utils import check_for_correct_spaces
from stable_baselines3.common.vec_env import VecEnv

from sb3_xinet.calibration import calibrate
from sb3_xinet.callbacks import with_pruning_callback
from sb3_xinet.common.checks import check_int, check_number
from sb3_xinet.common.errors import PrunedShapeError
from sb3_xinet.common.train_logs import PendingLogs
from sb3_xinet.common.training import XiNetTraining
from sb3_xinet.cost import count_parameters
from sb3_xinet.ofenet import action_dim, observation_dim
from sb3_xinet.policies import XiNetPolicy
from sb3_xinet.regularizer import Regularizer
from sb3_xinet.schedule import Auto, PruningSchedule
from sb3_xinet.summary import PruningSummary
from sb3_xinet.time_cost import TimeCalibration

SelfXiNet = TypeVar("SelfXiNet", bound="XiNetAlgorithm")
# the constructor arguments every XiNet algorithm adds to its algorithm's (see XiNetAlgorithm); the zoo's keys
XINET_ARGUMENTS = (
    "cost_weight",
    "cost_model",
    "time_calibration",
    "prune_threshold",
    "ofenet_pretrain_steps",
    "pruning_start",
    "pruning_end",
    "prune_freq",
    "loss_scale_window",
)
# the flat attributes of saves from before the schedule and the regularizer were objects
# Above this learning rate the critics' values oscillate (see XiNetAlgorithm._warn_fast_critics)
STABLE_LEARNING_RATE = 1e-3
FLAT_SCHEDULE = ("pruning_start", "pruning_end", "prune_freq")
FLAT_REGULARIZER = ("cost_weight", "cost_model", "time_calibration", "loss_scale_window", "loss_scales")
FLAT_DROPPED = ("cost_active", "initial_expected_params", "initial_expected_time")


def check_xinet_arguments(
    cost_weight: float,
    cost_model: str,
    time_calibration: TimeCalibration | dict[str, Any] | None,
    prune_threshold: float,
    ofenet_pretrain_steps: int | None,
    pruning_start: int | Auto | None,
    pruning_end: int | Auto | None,
    prune_freq: int,
    loss_scale_window: int,
    learning_starts: int,
) -> None:
    """Validate XiNet arguments (e.g. of a zoo YAML entry, completed with the constructor's defaults) as the
    algorithm does; a ValueError names the bad one."""
    Regularizer(cost_weight, cost_model, time_calibration, loss_scale_window)
    PruningSchedule.from_arguments(pruning_start, prune_freq, pruning_end, learning_starts)
    check_number("prune_threshold", prune_threshold, 0, 1)
    if ofenet_pretrain_steps is not None:
        check_int("ofenet_pretrain_steps", ofenet_pretrain_steps, 0)


def xinet_policy_kwargs(policy_kwargs: dict[str, Any] | None, cost_model: str) -> dict[str, Any]:
    """A copy of the user's ``policy_kwargs`` (pruning writes the current widths into the model's), with layer
    gates on OFENet's layers under the time cost, unless the user says otherwise."""
    policy_kwargs = dict(policy_kwargs or {})
    if cost_model == "time":
        policy_kwargs["ofenet_kwargs"] = {"layer_gates": True, **policy_kwargs.get("ofenet_kwargs", {})}
    return policy_kwargs


class XiNetAlgorithm(XiNetTraining):
    """The XiNet part of an off-policy actor-critic algorithm on a gated OFENet (mix it in before SB3's ``SAC`` or
    sb3-contrib's ``TQC``): the XiNet arguments, OFENet's pre-training and aux steps, the shared training step,
    pruning and its end, the summary, save and load.

    A subclass's ``__init__`` takes the algorithm's arguments and :data:`XINET_ARGUMENTS`, builds its algorithm
    with ``_init_setup_model=False`` and ``policy_kwargs=xinet_policy_kwargs(...)``, then calls
    :meth:`_init_xinet`; it gives its losses: :meth:`_next_value`, :meth:`_critic_losses` and :meth:`_actor_value`.

    XiNet arguments (every algorithm argument keeps its meaning; ``learning_starts`` defaults to 10,000 random
    steps, the OFENet warm-up):

    :param cost_weight: ``c``, the one regularization knob: a unit is kept when removing it would raise its
        network's loss by more than ``c`` times its share of the cost, relatively. 0 turns the regularizer and
        pruning off.
    :param cost_model: what a unit costs: ``"params"``, the parameters it keeps alive (the paper's), or
        ``"time"``, its share of a training step's time on this device, with a per-layer part that every OFENet
        layer (given a layer gate of its own) saves when it goes whole (:mod:`sb3_xinet.time_cost`)
    :param time_calibration: the time model's coefficients (a :class:`~sb3_xinet.time_cost.TimeCalibration` or
        its ``to_dict()``, e.g. another model's ``regularizer.time_calibration``); None measures them when the
        model is built (a few seconds). Saved with the model.
    :param prune_threshold: a unit whose theta is at or below this value is removed, in [0, 1]
    :param ofenet_pretrain_steps: aux-loss steps on the warm-up data before the first RL update (default:
        ``learning_starts``, one per warm-up transition, as OFENet's 10k steps on 10k random ones)
    :param pruning_start: env step at which the regularizer and pruning start (``"auto"``: ``learning_starts``
        + 10,000, so that the heads have learned and the loss scales are measured first; None: never)
    :param pruning_end: env step at which pruning ends (``"auto"``: ``pruning_start`` + 80,000; None: never): a
        last removal, then every surviving theta is folded into the weights and the gates leave the model, which
        from then on trains as plain OFENet-SAC (or -TQC) at its pruned widths, at their speed
    :param prune_freq: env steps between two removals of the units that reached the threshold
    :param loss_scale_window: time constant, in gradient steps, of the running loss scales ``L_ref``

    The schedule is ``model.pruning_schedule`` (:class:`~sb3_xinet.schedule.PruningSchedule`), the regularizer
    ``model.regularizer`` (:class:`~sb3_xinet.regularizer.Regularizer`); both are saved with the model.
    """

    policy: XiNetPolicy
    policy_aliases: ClassVar[dict[str, type[XiNetPolicy]]]  # type: ignore[assignment]

    def _init_xinet(
        self,
        cost_weight: float,
        cost_model: str,
        time_calibration: TimeCalibration | dict[str, Any] | None,
        prune_threshold: float,
        ofenet_pretrain_steps: int | None,
        pruning_start: int | Auto | None,
        pruning_end: int | Auto | None,
        prune_freq: int,
        loss_scale_window: int,
    ) -> None:
        """Check and store the XiNet arguments and the initial pruning state (after the algorithm's ``__init__``,
        before ``_setup_model``)."""
        self.regularizer = Regularizer(cost_weight, cost_model, time_calibration, loss_scale_window)
        self.pruning_schedule = PruningSchedule.from_arguments(pruning_start, prune_freq, pruning_end, self.learning_starts)
        self.prune_threshold = check_number("prune_threshold", prune_threshold, 0, 1)
        pretrain_steps = self.learning_starts if ofenet_pretrain_steps is None else ofenet_pretrain_steps
        self.ofenet_pretrain_steps = check_int("ofenet_pretrain_steps", pretrain_steps, 0)
        # pruning state, saved with the model
        self.pruning_ended = False
        self.ofenet_pretrained = False
        self.initial_units: dict[str, list[int]] = {}
        self.initial_params: dict[str, int] = {}

    def _get_policy_from_name(self, policy_name: str) -> type[XiNetPolicy]:
        """SB3's alias lookup, with a message that says what the algorithm supports."""
        if policy_name not in self.policy_aliases:
            policy = self.policy_aliases["MlpPolicy"].__name__
            raise ValueError(
                f"{type(self).__name__} has one policy, 'MlpPolicy' (or the class {policy}), not {policy_name!r}: OFENet "
                "reads a flat observation vector. Flatten Dict observations first (gymnasium.wrappers.FlattenObservation)."
            )
        return self.policy_aliases[policy_name]

    @staticmethod
    def _wrap_env(env: GymEnv, verbose: int = 0, monitor_wrapper: bool = True) -> VecEnv:
        """SB3's wrapping, then a clear error for the spaces OFENet cannot read."""
        env = OffPolicyAlgorithm._wrap_env(env, verbose, monitor_wrapper)
        observation_dim(env.observation_space)
        action_dim(env.action_space)
        return env

    def _setup_model(self) -> None:
        self._upgrade_save()
        super()._setup_model()
        if not self.initial_units:  # a new model, not a load: remember the unpruned sizes and cost
            self.initial_units = {name: list(block.units) for name, block in self.policy.gated_blocks().items()}
            self.initial_params = {name: count_parameters([net]) for name, net in self.policy.networks().items()}
            self.regularizer.setup(self.policy, lambda: calibrate(self))
            self._warn_fast_critics()
        self.regularizer.track([entry.loss for entry in self.policy.registry()])
        self._pending_logs = PendingLogs()

    def _warn_fast_critics(self) -> None:
        """Warn above :data:`STABLE_LEARNING_RATE`: the critics read OFENet's hundreds of features where SAC's read
        the observation and action, and Adam moves every weight by about the learning rate per step, so at the same
        rate their values move many times faster than SAC's. SB3's ``test_infinite_horizon`` (learning rate 1e-2,
        target updates with tau 0.5) shows it: SAC's value of the start state settles at 50-51 (the true 50) within
        500 steps, XiNetSAC's swings between 13 and 67; with 2 OFENet units per branch less (29-57)."""
        rate = self.lr_schedule(1.0)
        if rate > STABLE_LEARNING_RATE:
            inputs = observation_dim(self.observation_space) + action_dim(self.action_space)
            warnings.warn(
                f"learning_rate {rate:g} is above {STABLE_LEARNING_RATE:g}: the critics read OFENet's "
                f"{self.policy.ofenet.state_action_features_dim} features (SAC's read {inputs} inputs) and Adam moves "
                "each weight by about the learning rate per step, so their values move many times faster than SAC's "
                "at the same rate and may oscillate instead of settling. OFENet was tuned at 3e-4."
            )

    def _upgrade_save(self) -> None:
        """Move the flat attributes of a save made before the schedule and the regularizer were objects (or
        given to ``load`` as keyword arguments) into them."""
        flat = self.__dict__
        if any(name in flat for name in FLAT_SCHEDULE):
            saved = {"pruning_start": self.pruning_schedule.start, "prune_freq": self.pruning_schedule.freq}
            saved.update({name: flat.pop(name) for name in FLAT_SCHEDULE if name in flat})
            self.pruning_schedule = PruningSchedule.from_saved(saved)
        if any(name in flat for name in FLAT_REGULARIZER):
            regularizer = self.regularizer
            changed = {name: flat.pop(name) for name in FLAT_REGULARIZER if name in flat}
            changed.pop("loss_scales", None)  # loss values, not what the gradient scales read: measured afresh
            settings = {name: getattr(regularizer, name) for name in FLAT_REGULARIZER[:-1]}
            self.regularizer = Regularizer(**{**settings, **changed})
            self.regularizer.initial_cost = regularizer.initial_cost
        if "initial_expected_params" in flat:
            time = self.regularizer.cost_model == "time"
            self.regularizer.initial_cost = flat["initial_expected_time" if time else "initial_expected_params"]
        for name in FLAT_DROPPED:
            flat.pop(name, None)

    def _dump_logs(self) -> None:
        self._flush_train_logs()
        super()._dump_logs()

    def save(self, *args: Any, **kwargs: Any) -> None:
        """SB3's ``save``, after the pending loss-scale values are applied (they are saved with the model)."""
        self._flush_train_logs()
        super().save(*args, **kwargs)

    def _excluded_save_params(self) -> list[str]:
        # tensors of this run's losses
        return [*super()._excluded_save_params(), "_pending_logs"]

    def _get_torch_save_params(self) -> tuple[list[str], list[str]]:
        state_dicts, variables = super()._get_torch_save_params()
        return [*state_dicts, "policy.ofenet_optimizer"], variables

    def prune(self) -> dict[str, dict[int, list[int]]]:
        """Remove every unit whose theta reached ``prune_threshold`` (nothing without a regularizer).

        The pruned widths are written into ``policy_kwargs``, so a model saved at any point reloads with them.
        """
        if not self.regularizer.enabled:
            return {}
        removed = self.policy.prune(self.prune_threshold)
        if removed:
            self.policy_kwargs["architecture"] = self.policy.architecture()
            self.regularizer.forget()  # shapes changed
        return removed

    def end_pruning(self) -> None:
        """End the pruning phase now: remove the units at the threshold, then fold every surviving theta into
        the weights that read its unit and drop the gates, the thetas and their optimizer states. The networks
        compute with mean gates what they computed before (the deterministic policy, the critics, the targets and
        OFENet's features are unchanged); from then on the model trains as plain OFENet-SAC (or -TQC) at its
        pruned widths, and a save reloads as such. The pruning callback calls it at the schedule's end."""
        if self.pruning_ended:
            return
        self.prune()
        self.policy.fold_gates_()
        self.policy_kwargs.update(gates="none", architecture=self.policy.architecture())
        self.pruning_ended = True
        self.regularizer.stop()

    def set_parameters(self, load_path_or_dict: Any, exact_match: bool = True, device: th.device | str = "auto") -> None:
        """SB3's ``set_parameters``; parameters of other shapes (e.g. of a model pruned differently) raise a
        :class:`PrunedShapeError` that says so, not torch's size-mismatch list. Missing or unexpected names raise
        torch's RuntimeError, as in SB3."""
        try:
            super().set_parameters(load_path_or_dict, exact_match, device)
        except RuntimeError as error:
            if "size mismatch" not in str(error):
                raise
            raise PrunedShapeError(
                "These parameters do not fit this model's networks: pruning gives every model its own shapes. Load the "
                f"saved model with {type(self).__name__}.load, which rebuilds its pruned shapes."
            ) from error

    def pruning_summary(self) -> PruningSummary:
        """Units alive and parameters, now and at the start, per network and layer (print it for a table)."""
        return PruningSummary.from_policy(self.policy, self.initial_units, self.initial_params, self.num_timesteps)

    def learn(
        self: SelfXiNet,
        total_timesteps: int,
        callback: MaybeCallback = None,
        log_interval: int = 4,
        tb_log_name: str | None = None,
        reset_num_timesteps: bool = True,
        progress_bar: bool = False,
    ) -> SelfXiNet:
        """The algorithm's ``learn``, with a :class:`~sb3_xinet.callbacks.XiNetPruningCallback` attached unless one
        is already passed (``tb_log_name`` defaults to the class name, e.g. ``XiNetSAC``)."""
        super().learn(
            total_timesteps=total_timesteps,
            callback=with_pruning_callback(callback),
            log_interval=log_interval,
            tb_log_name=tb_log_name or type(self).__name__,
            reset_num_timesteps=reset_num_timesteps,
            progress_bar=progress_bar,
        )
        self._flush_train_logs()
        return self

    @classmethod
    def load(  # type: ignore[override]
        cls: type[SelfXiNet],
        path: str | pathlib.Path | io.BufferedIOBase,
        env: GymEnv | None = None,
        device: th.device | str = "auto",
        custom_objects: dict[str, Any] | None = None,
        print_system_info: bool = False,
        force_reset: bool = True,
        **kwargs: Any,
    ) -> SelfXiNet:
        """SB3's ``load``, after checking that the file is a save of this algorithm (the pruned shapes come back).
        Keyword arguments set attributes as in SB3, the XiNet arguments included (e.g. ``pruning_end=...``)."""
        if isinstance(path, io.BufferedIOBase):
            position = path.tell()
        data, _, _ = load_from_zip_file(path, device="cpu", custom_objects=custom_objects, load_data=True)
        policy_class = (data or {}).get("policy_class")
        expected = cls.policy_aliases["MlpPolicy"]
        if not (
            isinstance(policy_class, type)
            and issubclass(policy_class, XiNetPolicy)
            and policy_class.quantile_critics == expected.quantile_critics
        ):
            found = getattr(policy_class, "__name__", repr(policy_class))
            raise ValueError(f"{path} is not a {cls.__name__} save: its policy class is {found}, not {expected.__name__}")
        if isinstance(path, io.BufferedIOBase):
            path.seek(position)
        if env is not None:
            check_for_correct_spaces(cls._wrap_env(env), data["observation_space"], data["action_space"])
        model = super().load(path, env, device, custom_objects, print_system_info, force_reset, **kwargs)
        model.policy.apply_optimizer_kwargs()
        return model
