"""The training step of every XiNet algorithm (:class:`XiNetTraining`), written once for SAC and TQC.

An algorithm gives only its losses, through three methods: the next state's value from the target critics'
outputs, each critic's per-sample loss, and the value the actor maximises. Around SAC's update of the entropy
coefficient, the critics and the actor, the step adds:

1. OFENet pre-training: on the first call, ``ofenet_pretrain_steps`` aux-loss steps on the warm-up data
   (collected with random actions until ``learning_starts``), before any RL update;
2. one OFENet aux step per gradient step, on its own sample, with its own optimizer;
3. while the pruning schedule (:mod:`sb3_xinet.schedule`) has the regularizer on, every theta also gets the
   cost gradient of :mod:`sb3_xinet.regularizer` (which reads the task gradient first: its loss scales), and is
   projected onto its feasible set after each step.

OFENet features are computed once per batch in inference mode, and each loss's gradient is taken w.r.t. its own
network only, while ``phi_sa(s, pi(s))`` stays differentiable w.r.t. the action.
"""

from dataclasses import dataclass

import numpy as np
import torch as th
from stable_baselines3.common.buffers import NStepReplayBuffer, ReplayBuffer
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.type_aliases import ReplayBufferSamples
from stable_baselines3.common.utils import polyak_update
from stable_baselines3.common.vec_env import VecNormalize

from sb3_xinet.blocks import ACTOR, AUX_LOSS, CRITIC
from sb3_xinet.common.train_logs import PendingLogs
from sb3_xinet.gates import score_function_loss
from sb3_xinet.policies import XiNetActor, XiNetCritic, XiNetPolicy, copy_thetas_
from sb3_xinet.regularizer import CostGrads, Regularizer

Values = tuple[th.Tensor, ...]  # the outputs of every critic, in order
FLUSH_STEPS = 100  # on a GPU, gradient steps between two reads of the logged losses (see PendingLogs)


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


class XiNetTraining(OffPolicyAlgorithm):
    """The training step of an off-policy actor-critic algorithm on a gated OFENet (the base of
    :class:`~sb3_xinet.common.algorithm.XiNetAlgorithm`); a subclass gives its losses: :meth:`_next_value`,
    :meth:`_critic_losses` and :meth:`_actor_value`."""

    policy: XiNetPolicy
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

    # set by XiNetAlgorithm
    regularizer: Regularizer
    ofenet_pretrain_steps: int
    ofenet_pretrained: bool
    pruning_ended: bool
    _pending_logs: PendingLogs

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
        """Aux steps on the warm-up data (no cost gradient: the regularizer is off until pruning starts)."""
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
            self._gradient_step(batch_size, step, gradient_step % self.target_update_interval == 0)
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
        )

    def _gradient_step(self, batch_size: int, step: StepParameters, update_targets: bool) -> None:
        """One update of the entropy coefficient, the critics, the actor and OFENet, then the thetas' projection
        and the target critics."""
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
        self._critic_step(z_sa, target, step, cost_grads)
        self._actor_step(z_s, actions_pi, ent_coef * log_prob, step, cost_grads)
        self._pending_logs.append("aux", self._aux_step(batch_size, cost_grads))
        if self.regularizer.active:
            self.policy.project_heads_()
            # the targets' thetas are their critics' (XiNetPolicy.critic_parameters)
            copy_thetas_(step.critic_thetas, step.target_thetas)
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

    def _critic_step(self, z_sa: th.Tensor, target: th.Tensor, step: StepParameters, cost_grads: CostGrads | None) -> None:
        """The critics' update, sampled gates; each critic's thetas pay with their own critic's loss."""
        per_sample = self._critic_losses(self.critic.q_values(z_sa, stochastic=True), target)
        critic_loss = per_sample.mean(dim=1).sum()
        self._pending_logs.append("critic", critic_loss.detach())
        if step.reinforce:  # each critic's gates are weighted by its own per-sample losses
            for q_net, losses in zip(self.critic.q_networks, per_sample, strict=True):
                critic_loss = critic_loss + score_function_loss(q_net.latent.log_prob(), losses)
        self._set_grads(critic_loss, step.critic)
        for loss in step.critic_losses:
            self.regularizer.add_gradients(cost_grads, loss)
        self.critic.optimizer.step()

    def _actor_step(
        self,
        z_s: th.Tensor,
        actions_pi: th.Tensor,
        entropy_term: th.Tensor,
        step: StepParameters,
        cost_grads: CostGrads | None,
    ) -> None:
        """The actor's update, through the just-updated critics with mean gates (the gradient reaches the actor
        through phi_sa's action input); ``entropy_term`` is ``ent_coef * log_prob``."""
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

    def _flush_train_logs(self) -> None:
        """Log the means of the losses since the last flush and update the loss scales with the gradients recorded
        since (see :class:`~sb3_xinet.common.train_logs.PendingLogs`). The cost gradient meanwhile uses the scales
        as last flushed: they average over ``loss_scale_window`` steps, so a lag of ``FLUSH_STEPS`` changes
        nothing."""
        if self._pending_logs.empty:
            return
        self._pending_logs.flush(self.logger)
        self.regularizer.apply_scales()
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        if self.regularizer.cost_term is not None:
            self.logger.record("xinet/cost_term", float(self.regularizer.cost_term))


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
