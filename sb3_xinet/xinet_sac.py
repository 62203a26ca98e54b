"""XiNetSAC: SAC with a gated OFENet whose units are pruned inside ``learn()``.

The training step, pruning, save and load are :class:`~sb3_xinet.common.algorithm.XiNetAlgorithm`'s, shared with
XiNetTQC; this module gives SAC's arguments and losses (as in SB3's ``SAC.train``).
"""

from typing import Any, ClassVar

import torch as th
from stable_baselines3 import SAC
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.noise import ActionNoise
from stable_baselines3.common.type_aliases import GymEnv, Schedule

from sb3_xinet.common.algorithm import XiNetAlgorithm, xinet_policy_kwargs
from sb3_xinet.common.training import Values
from sb3_xinet.policies import XiNetPolicy
from sb3_xinet.schedule import Auto
from sb3_xinet.time_cost import TimeCalibration


class XiNetSAC(XiNetAlgorithm, SAC):
    """Soft Actor-Critic on a Bernoulli-gated OFENet that prunes its own units while it learns.

    The method of Guenter & Sideris, "Online Training and Pruning of Deep Reinforcement Learning Networks"
    (arXiv 2507.11975), reconstructed from its abstract and those of its predecessors (docs/design.md says what
    was chosen where they are silent), on OFENet (Ota et al., ICML 2020) and SB3's SAC.

    Every argument of SB3's :class:`~stable_baselines3.SAC` keeps its meaning (``learning_starts`` defaults to
    10,000 random steps, the OFENet warm-up; with gSDE the exploration matrix loses its rows with the actor's
    last-layer units). The XiNet arguments (``cost_weight``, ``cost_model``, ``time_calibration``,
    ``prune_threshold``, ``ofenet_pretrain_steps``, ``pruning_start``, ``pruning_end``, ``prune_freq``,
    ``loss_scale_window``) are described in :class:`~sb3_xinet.common.algorithm.XiNetAlgorithm`.
    """

    policy_aliases: ClassVar[dict[str, type[XiNetPolicy]]] = {"MlpPolicy": XiNetPolicy}  # type: ignore[assignment]
    policy: XiNetPolicy

    def __init__(
        self,
        policy: str | type[XiNetPolicy],
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

    def _next_value(self, next_values: Values) -> th.Tensor:
        """SAC's: the smallest of the target critics' Q-values."""
        return self._actor_value(next_values)

    def _critic_losses(self, values: Values, target: th.Tensor) -> th.Tensor:
        """Half the squared error of each critic (SB3's critic loss is the sum of their means)."""
        return 0.5 * (th.cat(values, dim=1) - target).pow(2).T

    def _actor_value(self, values: Values) -> th.Tensor:
        """The smallest of the critics' Q-values."""
        return th.min(th.cat(values, dim=1), dim=1, keepdim=True)[0]
