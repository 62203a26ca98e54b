"""The XiNet machinery every algorithm shares (:class:`XiNetAlgorithm`), mixed into SB3's SAC and sb3-contrib's TQC.

An algorithm's training step is its own (``SAC.train``, ``TQC.train``), with four additions written here once:

1. OFENet pre-training: on the first call, ``ofenet_pretrain_steps`` aux-loss steps on the warm-up data
   (collected with random actions until ``learning_starts``), before any RL update;
2. one OFENet aux step per gradient step, on its own sample, with its own optimizer;
3. when the pruning schedule has switched the regularizer on (:class:`~sb3_xinet.callbacks.XiNetPruningCallback`),
   every theta also gets the cost-aware gradient ``c * L_ref / C0 * dC/dtheta`` (``C`` the parameter count or
   the step time, :mod:`sb3_xinet.cost`, :mod:`sb3_xinet.time_cost`), with ``L_ref`` the running loss scale of
   the network that theta belongs to (aux, critic or actor loss);
4. every theta is projected onto its feasible set after each step.

The step itself is written once too (:meth:`XiNetAlgorithm.train`): an algorithm gives only its losses, through
three methods: the next state's value from the target critics' outputs, each critic's per-sample loss, and the
value the actor maximises. OFENet features are computed once per batch in inference mode, and each loss's
gradient is taken w.r.t. its own network only, while ``phi_sa(s, pi(s))`` stays differentiable w.r.t. the action.
"""

import io
import pathlib
from typing import Any, ClassVar, TypeVar

import numpy as np
import torch as th
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.buffers import NStepReplayBuffer, ReplayBuffer
from stable_baselines3.common.callbacks import BaseCallback, CallbackList, ConvertCallback
from stable_baselines3.common.save_util import load_from_zip_file
from stable_baselines3.common.type_aliases import GymEnv, MaybeCallback, ReplayBufferSamples
from stable_baselines3.common.utils import check_for_correct_spaces, polyak_update
from stable_baselines3.common.vec_env import VecEnv, VecNormalize

from sb3_xinet.callbacks import XiNetPruningCallback
from sb3_xinet.common.checks import check_int, check_number
from sb3_xinet.common.errors import PrunedShapeError
from sb3_xinet.cost import LossScale, check_cost_weight, count_parameters
from sb3_xinet.gates import score_function_loss
from sb3_xinet.ofenet import action_dim, observation_dim
from sb3_xinet.policies import XiNetPolicy
from sb3_xinet.summary import PruningSummary
from sb3_xinet.time_cost import TimeCalibration, calibrate

SelfXiNet = TypeVar("SelfXiNet", bound="XiNetAlgorithm")
CostGrads = dict[str, list[tuple[th.Tensor, th.Tensor]]]
Values = tuple[th.Tensor, ...]  # the outputs of every critic, in order
COST_REFRESH = 10  # gradient steps between two computations of dP/dtheta
GAP_ROWS = 32  # batch rows on which the actor's loss scale (the action gap) is measured at every step
FLUSH_STEPS = 100  # on a GPU, gradient steps between two reads of the logged losses (see _flush_train_logs)


COUNTS = {
    "ofenet_pretrain_steps": 0,
    "learning_starts": 0,
    "pruning_start": 0,
    "pruning_end": 0,
    "prune_freq": 1,
    "loss_scale_window": 1,
}
# default length of the pruning phase, in env steps (see docs/design.md, "Schedule")
PRUNING_STEPS = 80_000
# the constructor arguments every XiNet algorithm adds to its algorithm's (see XiNetAlgorithm)
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
COST_MODELS = ("params", "time")


def check_pruning_arguments(**kwargs: Any) -> dict[str, Any]:
    """Validate the XiNet arguments (any subset; ``pruning_start=None`` means the default); return them
    converted. Raises a ValueError that names the argument."""
    checked = dict(kwargs)
    if "cost_weight" in kwargs:
        checked["cost_weight"] = check_cost_weight(kwargs["cost_weight"])
    if "prune_threshold" in kwargs:
        checked["prune_threshold"] = check_number("prune_threshold", kwargs["prune_threshold"], 0, 1)
    if "cost_model" in kwargs and kwargs["cost_model"] not in COST_MODELS:
        raise ValueError(f"cost_model must be one of {COST_MODELS}, got {kwargs['cost_model']!r}")
    if kwargs.get("time_calibration") is not None:
        checked["time_calibration"] = TimeCalibration.from_value(kwargs["time_calibration"]).to_dict()
    for name, minimum in COUNTS.items():
        if kwargs.get(name) is not None:
            checked[name] = check_int(name, kwargs[name], minimum)
    start, end = checked.get("pruning_start"), checked.get("pruning_end")
    if start is not None and end is not None and end <= start:
        raise ValueError(f"pruning_end ({end}) must come after pruning_start ({start})")
    return checked


class XiNetAlgorithm:
    """The XiNet part of an off-policy actor-critic algorithm on a gated OFENet (mix it in before SB3's ``SAC`` or
    sb3-contrib's ``TQC``): the arguments and pruning state, OFENet's pre-training and aux steps, the cost
    gradients and loss scales, the shared training step, pruning and its end, the summary, save and load.

    A subclass's ``__init__`` has the algorithm's arguments and :data:`XINET_ARGUMENTS`, and passes its
    ``locals()`` through :meth:`_init_xinet` to the algorithm's constructor; it gives its losses:
    :meth:`_next_value`, :meth:`_critic_losses` and :meth:`_actor_value`.

    XiNet arguments (every algorithm argument keeps its meaning; ``learning_starts`` defaults to 10,000 random
    steps, the OFENet warm-up):

    :param cost_weight: ``c``, the one regularization knob: a unit is kept when removing it would raise its
        network's loss by more than ``c`` times its share of the cost, relatively. 0 turns the regularizer and
        pruning off.
    :param cost_model: what a unit costs: ``"params"``, the parameters it keeps alive (the paper's), or
        ``"time"``, its share of a training step's time on this device, with a per-layer part that every OFENet
        layer (given a layer gate of its own) saves when it goes whole (:mod:`sb3_xinet.time_cost`)
    :param time_calibration: the time model's coefficients (a :class:`~sb3_xinet.time_cost.TimeCalibration` or
        its ``to_dict()``, e.g. another model's ``time_calibration``); None measures them when the model is built
        (a few seconds). Saved with the model.
    :param prune_threshold: a unit whose theta is at or below this value is removed, in [0, 1]
    :param ofenet_pretrain_steps: aux-loss steps on the warm-up data before the first RL update (default:
        ``learning_starts``, one per warm-up transition, as OFENet's 10,000 steps on 10,000 random ones)
    :param pruning_start: env step at which the regularizer and pruning start (default: ``learning_starts``
        + 10,000, so that the heads have learned and the loss scales are measured first)
    :param pruning_end: env step at which pruning ends (default: ``pruning_start`` + 80,000): a last removal,
        then every surviving theta is folded into the weights and the gates leave the model, which from then on
        trains as plain OFENet-SAC (or -TQC) at its pruned widths, at their speed
    :param prune_freq: env steps between two removals of the units that reached the threshold
    :param loss_scale_window: time constant, in gradient steps, of the running loss scales ``L_ref``
    """

    policy: XiNetPolicy
    policy_aliases: ClassVar[dict[str, type[XiNetPolicy]]]

    def _init_xinet(self, arguments: dict[str, Any]) -> dict[str, Any]:
        """Check and store the XiNet arguments and the initial pruning state, from a constructor's ``locals()``;
        return the others, the algorithm's own, for its constructor (with a copy of ``policy_kwargs``, into which
        pruning writes the current widths, and ``_init_setup_model=False``: the subclass sets the model up)."""
        algorithm = {key: value for key, value in arguments.items() if key not in ("self", "__class__", *XINET_ARGUMENTS)}
        xinet = {name: arguments[name] for name in XINET_ARGUMENTS}
        if xinet["ofenet_pretrain_steps"] is None:
            xinet["ofenet_pretrain_steps"] = algorithm["learning_starts"]
        if xinet["pruning_start"] is None:
            xinet["pruning_start"] = algorithm["learning_starts"] + 10_000
        checked = check_pruning_arguments(**xinet, learning_starts=algorithm["learning_starts"])
        self.cost_weight = checked["cost_weight"]
        self.cost_model = checked["cost_model"]
        self.time_calibration: dict[str, Any] | None = checked["time_calibration"]
        self.prune_threshold = checked["prune_threshold"]
        self.ofenet_pretrain_steps = checked["ofenet_pretrain_steps"]
        self.pruning_start = checked["pruning_start"]
        self.pruning_end = self.pruning_start + PRUNING_STEPS if xinet["pruning_end"] is None else checked["pruning_end"]
        self.prune_freq = checked["prune_freq"]
        self.loss_scale_window = checked["loss_scale_window"]
        # pruning state, saved with the model
        self.cost_active = False
        self.pruning_ended = False
        self.ofenet_pretrained = False
        self.loss_scales: dict[str, LossScale] = {}
        self.initial_units: dict[str, list[int]] = {}
        self.initial_params: dict[str, int] = {}
        self.initial_expected_params = 0.0
        self.initial_expected_time = 0.0
        policy_kwargs = dict(algorithm["policy_kwargs"] or {})
        if self.cost_model == "time":  # OFENet's layers get layer gates, unless the user says otherwise
            policy_kwargs["ofenet_kwargs"] = {"layer_gates": True, **policy_kwargs.get("ofenet_kwargs", {})}
        return {**algorithm, "policy_kwargs": policy_kwargs, "_init_setup_model": False}

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
        env = BaseAlgorithm._wrap_env(env, verbose, monitor_wrapper)
        observation_dim(env.observation_space)
        action_dim(env.action_space)
        return env

    def _setup_model(self) -> None:
        super()._setup_model()  # type: ignore[misc]
        if not self.initial_units:  # a new model, not a load: remember the unpruned sizes
            self.initial_units = {name: list(block.units) for name, block in self.policy.gated_blocks().items()}
            self.initial_params = {name: count_parameters([net]) for name, net in self.policy.networks().items()}
            self.initial_expected_params = float(self.policy.expected_params().item())
            if self.cost_model == "time" and self.cost_weight > 0:
                if self.time_calibration is None:
                    self.time_calibration = calibrate(self).to_dict()
                self.initial_expected_time = float(self._expected_cost().item())
        # one scale per loss that thetas pay with; a save from an older version measures its missing ones afresh
        names = dict.fromkeys(entry.loss for entry in self.policy.registry())
        self.loss_scales = {name: self.loss_scales.get(name, LossScale(self.loss_scale_window)) for name in names}
        self._cost_cache: tuple[int, CostGrads] | None = None
        self._cost_term: th.Tensor | None = None  # the last cost term computed, logged by train()
        # losses and loss-scale values of the gradient steps since the last flush, as tensors on the device
        self._pending_logs, self._pending_scales = self._empty_logs(), []

    @staticmethod
    def _empty_logs() -> dict[str, list[th.Tensor]]:
        return {key: [] for key in ("ent_coef", "ent_coef_loss", "actor", "critic", "aux")}

    def _dump_logs(self) -> None:
        self._flush_train_logs()
        super()._dump_logs()

    def save(self, *args: Any, **kwargs: Any) -> None:
        """SB3's ``save``, after the pending loss-scale values are applied (they are saved with the model)."""
        self._flush_train_logs()
        super().save(*args, **kwargs)

    def _excluded_save_params(self) -> list[str]:
        # tensors of this run's parameters and losses
        return [*super()._excluded_save_params(), "_cost_cache", "_cost_term", "_pending_logs", "_pending_scales"]

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
        data = sample_one_step(self.replay_buffer, batch_size, self._vec_normalize_env)  # type: ignore[arg-type]
        obs, next_obs = self.policy.obs_to_float(data.observations), self.policy.obs_to_float(data.next_observations)
        per_sample = ofenet.aux_loss(obs, data.actions, next_obs, reduction="none")
        loss = per_sample.mean()
        surrogate = loss
        if self.policy.gate_estimator == "reinforce" and self.cost_active and ofenet.gate_parameters():
            surrogate = loss + score_function_loss(ofenet.log_prob(), per_sample)
        self.policy.ofenet_optimizer.zero_grad()
        surrogate.backward()
        self._add_cost_grads(cost_grads, "aux")
        self.policy.ofenet_optimizer.step()
        if self.cost_active:
            ofenet.project_()
        return loss.detach()

    def _pretrain_ofenet(self, batch_size: int) -> None:
        """Aux steps on the warm-up data. They do not enter the aux loss scale, which describes the pre-trained
        OFENet (whose loss the cost is weighed against), not the random one."""
        losses = [self._aux_step(batch_size, None) for _ in range(self.ofenet_pretrain_steps)]
        self.ofenet_pretrained = True
        if losses:
            self.logger.record("train/ofenet_pretrain_loss", th.stack(losses[-100:]).mean().item())

    def _cost_grads(self) -> CostGrads | None:
        """``(theta, dC/dtheta)`` of every gate, grouped by the loss its block pays with (see
        :attr:`~sb3_xinet.blocks.BlockEntry.loss`), or None while the regularizer is off.

        Recomputed every ``COST_REFRESH`` gradient steps and after every removal: a theta moves by at most its
        learning rate per step, so ``dP/dtheta`` (sums of other units' thetas) barely changes in between, and
        its autograd pass is a few percent of a training step.
        """
        if not self.cost_active or self.cost_weight == 0:
            return None
        if self._cost_cache is not None and self._cost_cache[0] < COST_REFRESH:
            self._cost_cache = (self._cost_cache[0] + 1, self._cost_cache[1])
            return self._cost_cache[1]
        registry = self.policy.registry()
        thetas = [gate.theta for entry in registry for gate in entry.block.gates()]
        if not thetas:
            return None
        expected = self._expected_cost()
        grads = dict(zip(thetas, th.autograd.grad(expected, thetas), strict=True))
        self._cost_term = self.cost_weight * expected.detach() / self._initial_cost()
        cost_grads: CostGrads = {}
        for entry in registry:
            cost_grads.setdefault(entry.loss, []).extend((gate.theta, grads[gate.theta]) for gate in entry.block.gates())
        self._cost_cache = (1, cost_grads)
        return cost_grads

    def _expected_cost(self) -> th.Tensor:
        """The cost the regularizer charges, as a polynomial in the thetas: P(theta), or T(theta) in seconds."""
        if self.cost_model == "time":
            assert self.time_calibration is not None
            return TimeCalibration.from_value(self.time_calibration).expected_time(self.policy)
        return self.policy.expected_params()

    def _initial_cost(self) -> float:
        """The cost of the unpruned network: the penalty's normaliser."""
        return self.initial_expected_time if self.cost_model == "time" else self.initial_expected_params

    def _add_cost_grads(self, cost_grads: CostGrads | None, loss: str) -> None:
        """Add ``c * L_ref / C0 * dC/dtheta`` to the gradients of the thetas that pay with ``loss``."""
        if cost_grads is None:
            return
        factor = self.cost_weight * abs(self.loss_scales[loss].value) / self._initial_cost()
        for theta, grad in cost_grads.get(loss, []):
            if theta.grad is None:
                theta.grad = factor * grad
            else:
                theta.grad.add_(grad, alpha=factor)

    @staticmethod
    def _set_grads(loss: th.Tensor, params: list[th.Tensor]) -> None:
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
            self._pending_logs["ent_coef_loss"].append(ent_coef_loss.detach())
            self.ent_coef_optimizer.zero_grad()
            ent_coef_loss.backward()
            self.ent_coef_optimizer.step()
        else:
            ent_coef = self.ent_coef_tensor
        self._pending_logs["ent_coef"].append(ent_coef)
        return ent_coef

    def train(self, gradient_steps: int, batch_size: int = 64) -> None:
        policy, ofenet, actor, critic = self.policy, self.policy.ofenet, self.actor, self.critic
        policy.set_training_mode(True)
        optimizers = [actor.optimizer, critic.optimizer]
        if self.ent_coef_optimizer is not None:
            optimizers += [self.ent_coef_optimizer]
        self._update_learning_rate(optimizers)
        # The thetas learn only while the regularizer is on: until then every gate is the identity (no
        # sampling cost), and the warm-up trains the weights of the full network.
        for block in policy.gated_blocks().values():
            for gate in block.gates():
                gate.theta.requires_grad_(self.cost_active)
        if not self.ofenet_pretrained:
            self._pretrain_ofenet(batch_size)
        reinforce = policy.gate_estimator == "reinforce" and self.cost_active
        actor_params = [param for param in actor.parameters() if param.requires_grad]
        critic_params = [param for param in critic.parameters() if param.requires_grad]
        critic_losses = self._critic_loss_names()
        critic_weights, critic_thetas, target_weights, target_thetas = policy.critic_parameters()
        # the loss scales serve the cost gradient: not measured once pruning is off for good
        measure = self.cost_weight > 0 and not self.pruning_ended
        logs, scales = self._pending_logs, self._pending_scales

        for gradient_step in range(gradient_steps):
            if self.use_sde:
                actor.reset_noise()  # as SAC.train: a new exploration matrix for every gradient step
            cost_grads = self._cost_grads()
            replay_data = self.replay_buffer.sample(batch_size, env=self._vec_normalize_env)  # type: ignore[union-attr]
            discounts = replay_data.discounts if replay_data.discounts is not None else self.gamma

            # OFENet in inference mode, observations and next observations in one call
            with th.no_grad():
                both = th.cat([replay_data.observations, replay_data.next_observations])
                z_s, z_s_next = ofenet.phi_s(policy.obs_to_float(both)).chunk(2)

            actions_pi, log_prob = actor.action_log_prob_from_features(z_s, stochastic_gates=True)
            log_prob = log_prob.reshape(-1, 1)

            ent_coef = self._ent_coef_step(log_prob)

            with th.no_grad():
                # the policy and the target critics evaluated with mean gates; phi_sa of the replay and the next
                # state-action pairs in one call
                next_actions, next_log_prob = actor.action_log_prob_from_features(z_s_next, stochastic_gates=False)
                z_sa, z_sa_next = ofenet.phi_sa_from_state(
                    th.cat([z_s, z_s_next]), th.cat([replay_data.actions, next_actions])
                ).chunk(2)
                next_value = self._next_value(self.critic_target.q_values(z_sa_next, stochastic=False))
                next_value = next_value - ent_coef * next_log_prob.reshape(-1, 1)
                target = replay_data.rewards + (1 - replay_data.dones) * discounts * next_value

            # one loss per critic: each critic's thetas pay with their own critic's loss
            per_sample_critics = self._critic_losses(critic.q_values(z_sa, stochastic=True), target)
            per_critic_losses = per_sample_critics.mean(dim=1)
            critic_loss = per_critic_losses.sum()
            logs["critic"].append(critic_loss.detach())
            if reinforce and policy.gates == "all":
                log_probs = sum(q_net.latent.log_prob() for q_net in critic.q_networks)
                critic_loss = critic_loss + score_function_loss(log_probs, per_sample_critics.sum(dim=0))
            self._set_grads(critic_loss, critic_params)
            for loss in critic_losses:
                self._add_cost_grads(cost_grads, loss)
            critic.optimizer.step()

            # the critics with mean gates; the gradient reaches the actor through phi_sa's action input
            z_sa_pi = ofenet.phi_sa_from_state(z_s, actions_pi)
            value_pi = self._actor_value(critic.q_values(z_sa_pi, stochastic=False))
            per_sample_actor = (ent_coef * log_prob - value_pi).squeeze(1)
            actor_loss = per_sample_actor.mean()
            logs["actor"].append(actor_loss.detach())
            if reinforce and policy.gates == "all":
                actor_loss = actor_loss + score_function_loss(actor.latent_pi.log_prob(), per_sample_actor)
            self._set_grads(actor_loss, actor_params)
            self._add_cost_grads(cost_grads, "actor")
            actor.optimizer.step()

            logs["aux"].append(self._aux_step(batch_size, cost_grads))
            if measure:
                # The actor's loss scale, the action gap: how much the choice of action moves Q (docs/design.md),
                # from the same critics after their update, with mean gates, like Q(s, pi(s)) above. On the first
                # GAP_ROWS of the batch only: the scale averages it over thousands of steps anyway.
                with th.no_grad():
                    value_replay = self._actor_value(critic.q_values(z_sa[:GAP_ROWS], stochastic=False))
                    action_gap = (value_pi[:GAP_ROWS].detach() - value_replay).abs().mean()
                scales.append(th.cat([per_critic_losses.detach(), action_gap.reshape(1), logs["aux"][-1].reshape(1)]))
            if self.cost_active:
                policy.project_heads_()
                # the targets' thetas are their critics' (XiNetPolicy.critic_parameters)
                polyak_update(critic_thetas, target_thetas, 1.0)
            if gradient_step % self.target_update_interval == 0:
                polyak_update(critic_weights, target_weights, self.tau)
                polyak_update(self.batch_norm_stats, self.batch_norm_stats_target, 1.0)

        self._n_updates += gradient_steps
        if self.device.type == "cpu" or len(logs["critic"]) >= FLUSH_STEPS:
            self._flush_train_logs()

    def _critic_loss_names(self) -> list[str]:
        """The loss-scale keys of the critics, in the order of their outputs."""
        return [entry.loss for entry in self.policy.heads() if entry.role == "critic"]

    def _flush_train_logs(self) -> None:
        """Log the means of the losses since the last flush and update the loss scales with their values, step by
        step: one host synchronisation in all.

        On the CPU, where reading a value costs nothing, this runs after every ``train()`` call; on a GPU every
        ``FLUSH_STEPS`` gradient steps and before each log dump, save and the end of ``learn()``, so that the
        training step never waits for the device. The cost gradient meanwhile uses the scales as last flushed:
        they average over ``loss_scale_window`` (10,000) steps, so a lag of ``FLUSH_STEPS`` changes nothing.
        """
        logs, scales = self._pending_logs, self._pending_scales
        names = [name for name, values in logs.items() if values]
        if not names:
            return
        means = th.stack([th.stack(logs[name]).float().mean() for name in names])
        values = dict(zip(names, means.tolist(), strict=True))
        if scales:
            scale_names = [*self._critic_loss_names(), "actor", "aux"]
            for row in th.stack(scales).tolist():
                for name, value in zip(scale_names, row, strict=True):
                    self.loss_scales[name].update(value)
        self._pending_logs, self._pending_scales = self._empty_logs(), []
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        self.logger.record("train/ent_coef", values["ent_coef"])
        self.logger.record("train/actor_loss", values["actor"])
        self.logger.record("train/critic_loss", values["critic"])
        self.logger.record("train/aux_loss", values["aux"])
        if "ent_coef_loss" in values:
            self.logger.record("train/ent_coef_loss", values["ent_coef_loss"])
        if self._cost_term is not None:
            self.logger.record("xinet/cost_term", float(self._cost_term))

    def prune(self) -> dict[str, dict[int, list[int]]]:
        """Remove every unit whose theta reached ``prune_threshold`` (nothing when ``cost_weight`` is 0).

        The pruned widths are written into ``policy_kwargs``, so a model saved at any point reloads with them.
        """
        if self.cost_weight == 0:
            return {}
        removed = self.policy.prune(self.prune_threshold)
        if removed:
            self.policy_kwargs["architecture"] = self.policy.architecture()
            self._cost_cache = None  # shapes changed
        return removed

    def end_pruning(self) -> None:
        """End the pruning phase now: remove the units at the threshold, then fold every surviving theta into
        the weights that read its unit and drop the gates, the thetas and their optimizer states. The networks
        compute with mean gates what they computed before (the deterministic policy, the critics, the targets and
        OFENet's features are unchanged); from then on the model trains as plain OFENet-SAC (or -TQC) at its
        pruned widths, and a save reloads as such. Called by :class:`XiNetPruningCallback` at ``pruning_end``."""
        if self.pruning_ended:
            return
        self.prune()
        self.policy.fold_gates_()
        self.policy_kwargs.update(gates="none", architecture=self.policy.architecture())
        self.pruning_ended = True
        self.cost_active = False
        self._cost_cache = self._cost_term = None

    def set_parameters(self, load_path_or_dict: Any, exact_match: bool = True, device: th.device | str = "auto") -> None:
        """SB3's ``set_parameters``; parameters of other shapes (e.g. of a model pruned differently) raise a
        :class:`PrunedShapeError` that says so, not torch's size-mismatch list. Missing or unexpected names raise
        torch's RuntimeError, as in SB3."""
        try:
            super().set_parameters(load_path_or_dict, exact_match, device)  # type: ignore[misc]
        except RuntimeError as error:
            if "size mismatch" not in str(error):
                raise
            raise PrunedShapeError(
                "These parameters do not fit this model's networks: pruning gives every model its own shapes. Load the "
                f"saved model with {type(self).__name__}.load, which rebuilds its pruned shapes."
            ) from error

    def pruning_summary(self) -> PruningSummary:
        """Units alive and parameters, now and at the start, per network and layer (print it for a table)."""
        return PruningSummary.from_model(self)

    def learn(
        self: SelfXiNet,
        total_timesteps: int,
        callback: MaybeCallback = None,
        log_interval: int = 4,
        tb_log_name: str | None = None,
        reset_num_timesteps: bool = True,
        progress_bar: bool = False,
    ) -> SelfXiNet:
        """The algorithm's ``learn``, with a :class:`XiNetPruningCallback` attached unless one is already passed
        (``tb_log_name`` defaults to the class name, e.g. ``XiNetSAC``)."""
        super().learn(  # type: ignore[misc]
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
        """SB3's ``load``, after checking that the file is a save of this algorithm (the pruned shapes come back)."""
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
        if "pruning_end" not in data and "pruning_start" in data:  # a save from before pruning had an end
            kwargs.setdefault("pruning_end", data["pruning_start"] + PRUNING_STEPS)
        model = super().load(path, env, device, custom_objects, print_system_info, force_reset, **kwargs)  # type: ignore[misc]
        model.policy.apply_optimizer_kwargs()
        return model


def with_pruning_callback(callback: MaybeCallback) -> MaybeCallback:
    """The user's callback(s) (plain functions wrapped as SB3 does), plus a default :class:`XiNetPruningCallback`
    unless one of them, at any depth of a :class:`CallbackList`, is one.

    :raises ValueError: for the RL Zoo's ``ParallelTrainCallback``, which trains a copy of the model loaded as a
        plain SAC in another thread: pruning either copy would change the shapes the other one syncs.
    """

    def flat(item: MaybeCallback) -> list[BaseCallback]:
        if item is None:
            return []
        if isinstance(item, list):
            return [leaf for sub in item for leaf in flat(sub)]
        if isinstance(item, CallbackList):
            return flat(item.callbacks)
        return [item if isinstance(item, BaseCallback) else ConvertCallback(item)]

    callbacks = flat(callback)
    for item in callbacks:
        if type(item).__name__ == "ParallelTrainCallback":
            raise ValueError(
                "XiNet algorithms do not support rl_zoo3's ParallelTrainCallback: it trains a copy of the model in another "
                "thread and copies its weights back, and pruning changes the networks' shapes while they train."
            )
    if any(isinstance(item, XiNetPruningCallback) for item in callbacks):
        return callback
    # the user's callback objects stay as given (a CallbackList keeps seeing the rollout's locals, as in SB3)
    given = callback if isinstance(callback, list) else [] if callback is None else [callback]
    return [item if isinstance(item, BaseCallback) else ConvertCallback(item) for item in given] + [XiNetPruningCallback()]


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
