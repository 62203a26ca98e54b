"""XiNetTQC: sb3-contrib's TQC (Truncated Quantile Critics) on a gated OFENet whose units are pruned inside ``learn()``.

The training step, pruning, save and load are :class:`~sb3_xinet.common.algorithm.XiNetAlgorithm`'s, shared with
XiNetSAC; this module gives TQC's arguments and losses (as in ``sb3_contrib.TQC.train``).
"""

from typing import Any, ClassVar

import torch as th
from sb3_contrib import TQC
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.noise import ActionNoise
from stable_baselines3.common.type_aliases import GymEnv, Schedule

from sb3_xinet.common.algorithm import XiNetAlgorithm, xinet_policy_kwargs
from sb3_xinet.common.checks import check_int
from sb3_xinet.common.training import Values
from sb3_xinet.policies import XiNetTQCPolicy
from sb3_xinet.schedule import Auto
from sb3_xinet.time_cost import TimeCalibration


def quantile_huber_losses(quantiles: th.Tensor, target: th.Tensor) -> th.Tensor:
    """The quantile Huber loss of sb3-contrib's TQC, per sample and per critic: (batch, n_critics).

    ``quantiles`` (batch, n_critics, n_quantiles), ``target`` (batch, n_target_quantiles). The mean of the result
    is ``sb3_contrib.common.utils.quantile_huber_loss(quantiles, target[:, None], sum_over_quantiles=False)``;
    written out here because pruning needs each critic's loss, and REINFORCE gates each sample's.
    """
    n_quantiles = quantiles.shape[-1]
    cum_prob = (th.arange(n_quantiles, device=quantiles.device, dtype=quantiles.dtype) + 0.5) / n_quantiles
    delta = target[:, None, None, :] - quantiles[..., None]
    abs_delta = delta.abs()
    huber = th.where(abs_delta > 1, abs_delta - 0.5, delta**2 * 0.5)
    loss = (cum_prob.view(1, 1, -1, 1) - (delta.detach() < 0).to(quantiles.dtype)).abs() * huber
    return loss.mean(dim=(2, 3))


class XiNetTQC(XiNetAlgorithm, TQC):
    """TQC (Kuznetsov et al., ICML 2020) on a Bernoulli-gated OFENet that prunes its own units while it learns:
    the method of Guenter & Sideris, "Online Training and Pruning of Deep Reinforcement Learning Networks"
    (arXiv 2507.11975), reconstructed from its abstract (docs/design.md), applied to sb3-contrib's TQC.

    Every argument of sb3-contrib's :class:`~sb3_contrib.TQC` keeps its meaning (``learning_starts`` defaults to
    10,000 random steps, the OFENet warm-up; ``n_quantiles`` and ``n_critics`` are policy arguments, as in
    sb3-contrib; with gSDE the exploration matrix loses its rows with the actor's last-layer units). The XiNet
    arguments are described in
    :class:`~sb3_xinet.common.algorithm.XiNetAlgorithm`. Each critic's hidden units are gated and pruned
    independently, and each critic's thetas pay with its own share of TQC's critic loss.
    """

    policy_aliases: ClassVar[dict[str, type[XiNetTQCPolicy]]] = {"MlpPolicy": XiNetTQCPolicy}  # type: ignore[assignment]
    policy: XiNetTQCPolicy

    def __init__(
        self,
        policy: str | type[XiNetTQCPolicy],
        env: GymEnv | str,
        learning_rate: float | Schedule = 3e-4,
        buffer_size: int = 1_000_000,
        learning_starts: int = 10_000,
        batch_size: int = 256,
        tau: float = 0.005,
        gamma: float = 0.99,
        train_freq: int | tuple[int, str] = 1,
        gradient_steps: int = 1,
        action_noise: ActionNoise | None = None,
        replay_buffer_class: type[ReplayBuffer] | None = None,
        replay_buffer_kwargs: dict[str, Any] | None = None,
        optimize_memory_usage: bool = False,
        n_steps: int = 1,
        ent_coef: str | float = "auto",
        target_update_interval: int = 1,
        target_entropy: str | float = "auto",
        top_quantiles_to_drop_per_net: int = 2,
        use_sde: bool = False,
        sde_sample_freq: int = -1,
        use_sde_at_warmup: bool = False,
        stats_window_size: int = 100,
        tensorboard_log: str | None = None,
        policy_kwargs: dict[str, Any] | None = None,
        verbose: int = 0,
        seed: int | None = None,
        device: th.device | str = "auto",
        cost_weight: float = 1.0,
        cost_model: str = "params",
        time_calibration: TimeCalibration | dict[str, Any] | None = None,
        prune_threshold: float = 1e-3,
        ofenet_pretrain_steps: int | None = None,
        pruning_start: int | Auto | None = "auto",
        pruning_end: int | Auto | None = "auto",
        prune_freq: int = 1000,
        loss_scale_window: int = 10_000,
        _init_setup_model: bool = True,
    ) -> None:
        check_int("top_quantiles_to_drop_per_net", top_quantiles_to_drop_per_net, 0)
        super().__init__(
            policy,
            env,
            learning_rate=learning_rate,
            buffer_size=buffer_size,
            learning_starts=learning_starts,
            batch_size=batch_size,
            tau=tau,
            gamma=gamma,
            train_freq=train_freq,
            gradient_steps=gradient_steps,
            action_noise=action_noise,
            replay_buffer_class=replay_buffer_class,
            replay_buffer_kwargs=replay_buffer_kwargs,
            optimize_memory_usage=optimize_memory_usage,
            n_steps=n_steps,
            ent_coef=ent_coef,
            target_update_interval=target_update_interval,
            target_entropy=target_entropy,
            top_quantiles_to_drop_per_net=top_quantiles_to_drop_per_net,
            use_sde=use_sde,
            sde_sample_freq=sde_sample_freq,
            use_sde_at_warmup=use_sde_at_warmup,
            stats_window_size=stats_window_size,
            tensorboard_log=tensorboard_log,
            policy_kwargs=xinet_policy_kwargs(policy_kwargs, cost_model),
            verbose=verbose,
            seed=seed,
            device=device,
            _init_setup_model=False,
        )
        self._init_xinet(
            cost_weight=cost_weight,
            cost_model=cost_model,
            time_calibration=time_calibration,
            prune_threshold=prune_threshold,
            ofenet_pretrain_steps=ofenet_pretrain_steps,
            pruning_start=pruning_start,
            pruning_end=pruning_end,
            prune_freq=prune_freq,
            loss_scale_window=loss_scale_window,
        )
        if _init_setup_model:
            self._setup_model()

    def _setup_model(self) -> None:
        super()._setup_model()
        if self.top_quantiles_to_drop_per_net >= self.policy.n_quantiles:
            raise ValueError(
                f"top_quantiles_to_drop_per_net ({self.top_quantiles_to_drop_per_net}) must be smaller than n_quantiles "
                f"({self.policy.n_quantiles}): the target would keep no quantile"
            )

    def _next_value(self, next_values: Values) -> th.Tensor:
        """TQC's: every target critic's quantiles pooled and sorted, the top ``top_quantiles_to_drop_per_net`` per
        critic dropped: (batch, n_target_quantiles)."""
        pooled = th.cat(next_values, dim=1)
        n_target = pooled.shape[1] - self.top_quantiles_to_drop_per_net * len(next_values)
        return th.sort(pooled, dim=1).values[:, :n_target]

    def _critic_losses(self, values: Values, target: th.Tensor) -> th.Tensor:
        """Each critic's share of TQC's critic loss (the mean over critics of the quantile Huber loss)."""
        return quantile_huber_losses(th.stack(values, dim=1), target).T / len(values)

    def _actor_value(self, values: Values) -> th.Tensor:
        """The mean of every critic's quantiles."""
        return th.stack(values, dim=1).mean(dim=2).mean(dim=1, keepdim=True)
