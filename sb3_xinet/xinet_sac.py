"""XiNetSAC: SAC with a gated OFENet whose units are pruned inside ``learn()``.

The training step is SAC's (SB3 ``SAC.train``) with the XiNet additions of
:class:`~sb3_xinet.common.algorithm.XiNetAlgorithm`; this module gives SAC's losses only.
"""

from typing import Any, ClassVar

import torch as th
from stable_baselines3 import SAC
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.noise import ActionNoise
from stable_baselines3.common.type_aliases import GymEnv, Schedule

from sb3_xinet.common.algorithm import Values, XiNetAlgorithm
from sb3_xinet.policies import XiNetPolicy
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
        pruning_start: int | None = None,
        pruning_end: int | None = None,
        prune_freq: int = 1000,
        loss_scale_window: int = 10_000,
        _init_setup_model: bool = True,
    ) -> None:
        super().__init__(**self._init_xinet(locals()))
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
