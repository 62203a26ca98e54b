"""The XiNet machinery every algorithm shares (:class:`XiNetAlgorithm`), mixed into SB3's SAC and sb3-contrib's TQC.

One training step serves both algorithms (:meth:`XiNetAlgorithm.train`); an algorithm gives only its losses,
through three methods: the next state's value from the target critics' outputs, each critic's per-sample loss,
and the value the actor maximises. Around SAC's update of the entropy coefficient, the critics and the actor,
the step adds:

1. OFENet pre-training: on the first call, ``ofenet_pretrain_steps`` aux-loss steps on the warm-up data
   (collected with random actions until ``learning_starts``), before any RL update;
2. one OFENet aux step per gradient step, on its own sample, with its own optimizer;
3. while the pruning schedule (:mod:`sb3_xinet.schedule`) has the regularizer on, every theta also gets the
   cost gradient of :mod:`sb3_xinet.regularizer`, and is projected onto its feasible set after each step.

OFENet features are computed once per batch in inference mode, and each loss's gradient is taken w.r.t. its own
network only, while ``phi_sa(s, pi(s))`` stays differentiable w.r.t. the action.
"""

import io
import pathlib
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

import numpy as np
import torch as th
from stable_baselines3.common.buffers import NStepReplayBuffer, ReplayBuffer
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.save_util import load_from_zip_file
from stable_baselines3.common.type_aliases import GymEnv, MaybeCallback, ReplayBufferSamples
from stable_baselines3.common.utils import check_for_correct_spaces, polyak_update
from stable_baselines3.common.vec_env import VecEnv, VecNormalize

from sb3_xinet.blocks import ACTOR, AUX_LOSS, CRITIC
from sb3_xinet.calibration import calibrate
from sb3_xinet.callbacks import with_pruning_callback
from sb3_xinet.common.checks import check_int, check_number
from sb3_xinet.common.errors import PrunedShapeError
from sb3_xinet.common.train_logs import PendingLogs
from sb3_xinet.cost import count_parameters
from sb3_xinet.gates import score_function_loss
from sb3_xinet.ofenet import action_dim, observation_dim
from sb3_xinet.policies import XiNetActor, XiNetCritic, XiNetPolicy
from sb3_xinet.regularizer import CostGrads, Regularizer
from sb3_xinet.schedule import Auto, PruningSchedule
from sb3_xinet.summary import PruningSummary
from sb3_xinet.time_cost import TimeCalibration

SelfXiNet = TypeVar("SelfXiNet", bound="XiNetAlgorithm")
Values = tuple[th.Tensor, ...]  # the outputs of every critic, in order
GAP_ROWS = 32  # batch rows on which the actor's loss scale (the action gap) is measured at every step
FLUSH_STEPS = 100  # on a GPU, gradient steps between two reads of the logged losses (see PendingLogs)
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


@dataclass(frozen=True)
class StepParameters:
    """What the gradient steps of one ``train()`` call update, collected once per call."""

    actor: list[th.nn.Parameter]
    critic: list[th.nn.Parameter]
    critic_weights: list[th.nn.Parameter]
    critic_thetas: list[th.nn.Parameter]
    target_weights: list[th.nn.Parameter]
    target_thetas: list[th.nn.Parameter]
    critic_losses: list[str]  # the loss-scale keys of the critics, in the order of their outputs
    reinforce: bool  # the gates of the actor and the critics learn by REINFORCE
    measure: bool  # the loss scales are measured


class XiNetAlgorithm(OffPolicyAlgorithm):
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
    # SAC's and TQC's attributes that the training step uses
    actor: XiNetActor
    critic: XiNetCritic
    critic_target: XiNetCritic
    replay_buffer: ReplayBuffer
    ent_coef_optimizer: th.optim.Adam | None
    log_ent_coef: th.Tensor | None
    ent_coef_tensor: th.Tensor
    target_entropy: float
    target_update_interval: int
    batch_norm_stats: list[th.Tensor]
    batch_norm_stats_target: list[th.Tensor]

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

    def _next_value(self, next_values: Values) -> th.Tensor:
        """The next state-action's value from the target critics' outputs (mean gates): (batch, 1), or (batch, k)
        for a distribution of k values; the critics regress on ``reward + (1 - done) * discount * (value -
        ent_coef * log_prob)``."""
        raise NotImplementedError

    def _critic_losses(self, values: Values, target: th.Tensor) -> th.Tensor:
        """(n_critics, batch): each critic's per-sample loss, as it enters the algorithm's critic loss (which is
        the sum over critics of their means over the batch), from the critics' outputs and the target."""
        raise NotImplementedError

    def _actor_value(self, values: Values) -> th.Tensor:
        """(batch, 1): the value of an action that the actor maximises, from the critics' outputs."""
        raise NotImplementedError

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
        self.regularizer.track([entry.loss for entry in self.policy.registry()])
        self._pending_logs = PendingLogs()

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
            scales = changed.pop("loss_scales", regularizer.loss_scales)
            settings = {name: getattr(regularizer, name) for name in FLAT_REGULARIZER[:-1]}
            self.regularizer = Regularizer(**{**settings, **changed})
            self.regularizer.loss_scales = scales
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
        return [*super()._excluded_save_params(), "_pending_logs"]  # tensors of this run's losses

    def _get_torch_save_params(self) -> tuple[list[str], list[str]]:
        state_dicts, variables = super()._get_torch_save_params()
        return [*state_dicts, "policy.ofenet_optimizer"], variables

    def _update_learning_rate(self, optimizers: list[th.optim.Optimizer] | th.optim.Optimizer) -> None:
        """SB3's schedule, applied to the weights only: thetas keep their own learning rate."""
        lr = self.lr_schedule(self._current_progress_remaining)
        self.logger.record("train/learning_rate", lr)
        for optimizer in optimizers if isinstance(optimizers, list) else [optimizers]:
            for group in optimizer.param_groups:
                if not group.get("theta", False):
                    group["lr"] = lr

    def _aux_step(self, batch_size: int, cost_grads: CostGrads | None) -> th.Tensor:
        """One OFENet update on its own sample: aux loss, cost gradient, projection. Returns the loss (a tensor,
        read by the caller once per ``train()`` call)."""
        ofenet = self.policy.ofenet
        data = sample_one_step(self.replay_buffer, batch_size, self._vec_normalize_env)
        obs, next_obs = self.policy.obs_to_float(data.observations), self.policy.obs_to_float(data.next_observations)
        per_sample = ofenet.aux_loss(obs, data.actions, next_obs, reduction="none")
        loss = per_sample.mean()
        surrogate = loss
        if self.policy.gate_estimator == "reinforce" and self.regularizer.active and ofenet.gate_parameters():
            surrogate = loss + score_function_loss(ofenet.log_prob(), per_sample)
        self.policy.ofenet_optimizer.zero_grad()
        surrogate.backward()
        self.regularizer.add_gradients(cost_grads, AUX_LOSS)
        self.policy.ofenet_optimizer.step()
        if self.regularizer.active:
            ofenet.project_()
        return loss.detach()

    def _pretrain_ofenet(self, batch_size: int) -> None:
        """Aux steps on the warm-up data. They do not enter the aux loss scale, which describes the pre-trained
        OFENet (whose loss the cost is weighed against), not the random one."""
        losses = [self._aux_step(batch_size, None) for _ in range(self.ofenet_pretrain_steps)]
        self.ofenet_pretrained = True
        if losses:
            self.logger.record("train/ofenet_pretrain_loss", th.stack(losses[-100:]).mean().item())

    @staticmethod
    def _set_grads(loss: th.Tensor, params: list[th.nn.Parameter]) -> None:
        """The gradient of ``loss`` w.r.t. ``params`` only, into their ``.grad``.

        Autograd then runs only the part of the backward pass that leads to ``params``: the actor loss, which
        passes through OFENet and the critics, computes no gradient for their weights (SB3's SAC computes the
        critics' and discards them), and OFENet's weights need no freezing during the RL losses.
        """
        for param, grad in zip(params, th.autograd.grad(loss, params, allow_unused=True), strict=True):
            param.grad = grad  # None for a parameter the loss does not reach: the optimizer skips it

    def _ent_coef_step(self, log_prob: th.Tensor) -> th.Tensor:
        """SAC's entropy-coefficient update (when it is learned); returns the coefficient for this step's losses."""
        if self.ent_coef_optimizer is not None and self.log_ent_coef is not None:
            ent_coef = th.exp(self.log_ent_coef.detach())
            ent_coef_loss = -(self.log_ent_coef * (log_prob + float(self.target_entropy)).detach()).mean()
            self._pending_logs.append("ent_coef_loss", ent_coef_loss.detach())
            self.ent_coef_optimizer.zero_grad()
            ent_coef_loss.backward()
            self.ent_coef_optimizer.step()
        else:
            ent_coef = self.ent_coef_tensor
        self._pending_logs.append("ent_coef", ent_coef)
        return ent_coef

    def train(self, gradient_steps: int, batch_size: int = 64) -> None:
        """``gradient_steps`` updates of the entropy coefficient, the critics, the actor and OFENet (each with its
        thetas' cost gradient while the regularizer is on), each on its own replay sample; before the first,
        OFENet's pre-training on the warm-up data."""
        step = self._start_training(batch_size)
        for gradient_step in range(gradient_steps):
            self._gradient_step(batch_size, step, update_targets=gradient_step % self.target_update_interval == 0)
        self._n_updates += gradient_steps
        if self.device.type == "cpu" or len(self._pending_logs) >= FLUSH_STEPS:
            self._flush_train_logs()

    def _start_training(self, batch_size: int) -> StepParameters:
        """Training mode, learning rates, the thetas' ``requires_grad`` and OFENet's pre-training; returns what
        the gradient steps update."""
        policy, active = self.policy, self.regularizer.active
        policy.set_training_mode(True)
        optimizers = [self.actor.optimizer, self.critic.optimizer]
        if self.ent_coef_optimizer is not None:
            optimizers += [self.ent_coef_optimizer]
        self._update_learning_rate(optimizers)
        # The thetas learn only while the regularizer is on: until then every gate is the identity (no
        # sampling cost), and the warm-up trains the weights of the full network.
        for block in policy.gated_blocks().values():
            for gate in block.gates():
                gate.theta.requires_grad_(active)
        if not self.ofenet_pretrained:
            self._pretrain_ofenet(batch_size)
        critic_weights, critic_thetas, target_weights, target_thetas = policy.critic_parameters()
        return StepParameters(
            actor=[param for param in self.actor.parameters() if param.requires_grad],
            critic=[param for param in self.critic.parameters() if param.requires_grad],
            critic_weights=critic_weights,
            critic_thetas=critic_thetas,
            target_weights=target_weights,
            target_thetas=target_thetas,
            critic_losses=[entry.loss for entry in policy.heads() if entry.role == CRITIC],
            reinforce=policy.gate_estimator == "reinforce" and active and policy.gates == "all",
            # the loss scales serve the cost gradient: not measured once pruning is off for good
            measure=self.regularizer.enabled and not self.pruning_ended,
        )

    def _gradient_step(self, batch_size: int, step: StepParameters, update_targets: bool) -> None:
        """One update of the entropy coefficient, the critics, the actor and OFENet, then the loss scales, the
        thetas' projection and the target critics."""
        if self.use_sde:
            self.actor.reset_noise()  # as SAC.train: a new exploration matrix for every gradient step
        cost_grads = self.regularizer.gradients(self.policy)
        replay_data = self.replay_buffer.sample(batch_size, env=self._vec_normalize_env)
        # OFENet in inference mode, observations and next observations in one call
        with th.no_grad():
            both = th.cat([replay_data.observations, replay_data.next_observations])
            z_s, z_s_next = self.policy.ofenet.phi_s(self.policy.obs_to_float(both)).chunk(2)
        actions_pi, log_prob = self.actor.action_log_prob_from_features(z_s, stochastic_gates=True)
        log_prob = log_prob.reshape(-1, 1)
        ent_coef = self._ent_coef_step(log_prob)
        z_sa, target = self._critic_target(replay_data, z_s, z_s_next, ent_coef)
        per_critic_losses = self._critic_step(z_sa, target, step, cost_grads)
        value_pi = self._actor_step(z_s, actions_pi, ent_coef * log_prob, step, cost_grads)
        self._pending_logs.append("aux", self._aux_step(batch_size, cost_grads))
        if step.measure:
            self._record_loss_scales(z_sa, value_pi, per_critic_losses)
        if self.regularizer.active:
            self.policy.project_heads_()
            # the targets' thetas are their critics' (XiNetPolicy.critic_parameters)
            polyak_update(step.critic_thetas, step.target_thetas, 1.0)
        if update_targets:
            polyak_update(step.critic_weights, step.target_weights, self.tau)
            polyak_update(self.batch_norm_stats, self.batch_norm_stats_target, 1.0)

    def _critic_target(
        self, replay_data: ReplayBufferSamples, z_s: th.Tensor, z_s_next: th.Tensor, ent_coef: th.Tensor
    ) -> tuple[th.Tensor, th.Tensor]:
        """``phi_sa`` of the replay's state-action pairs, and the critics' regression target (the policy and the
        target critics with mean gates; ``phi_sa`` of the replay and the next state-action pairs in one call)."""
        discounts = replay_data.discounts if replay_data.discounts is not None else self.gamma
        with th.no_grad():
            next_actions, next_log_prob = self.actor.action_log_prob_from_features(z_s_next, stochastic_gates=False)
            z_sa, z_sa_next = self.policy.ofenet.phi_sa_from_state(
                th.cat([z_s, z_s_next]), th.cat([replay_data.actions, next_actions])
            ).chunk(2)
            next_value = self._next_value(self.critic_target.q_values(z_sa_next, stochastic=False))
            next_value = next_value - ent_coef * next_log_prob.reshape(-1, 1)
            target = replay_data.rewards + (1 - replay_data.dones) * discounts * next_value
        return z_sa, target

    def _critic_step(
        self, z_sa: th.Tensor, target: th.Tensor, step: StepParameters, cost_grads: CostGrads | None
    ) -> th.Tensor:
        """The critics' update, sampled gates; each critic's thetas pay with their own critic's loss. Returns the
        loss of each critic."""
        per_sample = self._critic_losses(self.critic.q_values(z_sa, stochastic=True), target)
        per_critic_losses = per_sample.mean(dim=1)
        critic_loss = per_critic_losses.sum()
        self._pending_logs.append("critic", critic_loss.detach())
        if step.reinforce:
            log_probs = sum(q_net.latent.log_prob() for q_net in self.critic.q_networks)
            critic_loss = critic_loss + score_function_loss(log_probs, per_sample.sum(dim=0))
        self._set_grads(critic_loss, step.critic)
        for loss in step.critic_losses:
            self.regularizer.add_gradients(cost_grads, loss)
        self.critic.optimizer.step()
        return per_critic_losses

    def _actor_step(
        self,
        z_s: th.Tensor,
        actions_pi: th.Tensor,
        entropy_term: th.Tensor,
        step: StepParameters,
        cost_grads: CostGrads | None,
    ) -> th.Tensor:
        """The actor's update, through the just-updated critics with mean gates (the gradient reaches the actor
        through phi_sa's action input); ``entropy_term`` is ``ent_coef * log_prob``. Returns ``Q(s, pi(s))``."""
        z_sa_pi = self.policy.ofenet.phi_sa_from_state(z_s, actions_pi)
        value_pi = self._actor_value(self.critic.q_values(z_sa_pi, stochastic=False))
        per_sample = (entropy_term - value_pi).squeeze(1)
        actor_loss = per_sample.mean()
        self._pending_logs.append("actor", actor_loss.detach())
        if step.reinforce:
            actor_loss = actor_loss + score_function_loss(self.actor.latent_pi.log_prob(), per_sample)
        self._set_grads(actor_loss, step.actor)
        self.regularizer.add_gradients(cost_grads, ACTOR)
        self.actor.optimizer.step()
        return value_pi

    def _record_loss_scales(self, z_sa: th.Tensor, value_pi: th.Tensor, per_critic_losses: th.Tensor) -> None:
        """This step's values of the loss scales: each critic's loss, the actor's action gap and the aux loss.

        The actor's scale, the action gap, is how much the choice of action moves Q (docs/design.md): from the same
        critics after their update, with mean gates, like ``Q(s, pi(s))``. On the first ``GAP_ROWS`` of the batch
        only: the scale averages it over thousands of steps anyway.
        """
        with th.no_grad():
            value_replay = self._actor_value(self.critic.q_values(z_sa[:GAP_ROWS], stochastic=False))
            action_gap = (value_pi[:GAP_ROWS].detach() - value_replay).abs().mean()
        aux = self._pending_logs.last("aux")
        self.regularizer.record_scales(th.cat([per_critic_losses.detach(), action_gap.reshape(1), aux.reshape(1)]))

    def _loss_scale_names(self) -> list[str]:
        """The loss-scale keys in the order :meth:`_record_loss_scales` records them."""
        return [*(entry.loss for entry in self.policy.heads() if entry.role == CRITIC), ACTOR, AUX_LOSS]

    def _flush_train_logs(self) -> None:
        """Log the means of the losses since the last flush and update the loss scales with their values (see
        :class:`~sb3_xinet.common.train_logs.PendingLogs`). The cost gradient meanwhile uses the scales as last
        flushed: they average over ``loss_scale_window`` steps, so a lag of ``FLUSH_STEPS`` changes nothing."""
        if self._pending_logs.empty:
            return
        self._pending_logs.flush(self.logger)
        self.regularizer.apply_scales(self._loss_scale_names())
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        if self.regularizer.cost_term is not None:
            self.logger.record("xinet/cost_term", float(self.regularizer.cost_term))

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


def sample_one_step(buffer: ReplayBuffer, batch_size: int, env: VecNormalize | None) -> ReplayBufferSamples:
    """A replay sample whose ``next_observations`` are one step ahead of its observations.

    OFENet predicts the next observation; SB3's :class:`NStepReplayBuffer` (``n_steps > 1``) returns the
    observation n steps ahead instead, so from it the transitions are read as stored, with the plain replay
    buffer's sampling.
    """
    if not isinstance(buffer, NStepReplayBuffer):
        return buffer.sample(batch_size, env=env)
    upper_bound = buffer.buffer_size if buffer.full else buffer.pos
    return ReplayBuffer._get_samples(buffer, np.random.randint(0, upper_bound, size=batch_size), env=env)
