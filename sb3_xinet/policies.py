"""Actor, critics and policies of the XiNet algorithms: SAC's (and TQC's) heads wired to one shared, gated OFENet.

- One :class:`~sb3_xinet.ofenet.OFENet` lives in the policy (``policy.ofenet``). The actor reads ``phi_s(s)``,
  each critic and target critic read ``phi_sa(s, a)``; they hold OFENet by reference, outside their own
  parameters, so it is in neither the actor's nor the critic's optimizer, nor in the Polyak update: there is no
  target OFENet. OFENet has its own optimizer (``policy.ofenet_optimizer``), driven by its aux loss only.
- Every RL pass uses OFENet in inference mode (running BatchNorm statistics, mean gates), whatever
  ``set_training_mode`` says; ``phi_sa(s, pi(s))`` stays differentiable w.r.t. the action.
- The hidden units of the actor and of each critic are gated too (``gates="all"``, the default), or only
  OFENet's (``gates="ofenet"``), or none (``gates="none"``: the dense OFENet-SAC baseline).
- The current, possibly pruned, widths are plain data (:meth:`XiNetPolicy.architecture`), passed back as the
  ``architecture`` keyword on load, so SB3 rebuilds the pruned shapes before loading the weights.
"""

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, ClassVar, Literal

import torch as th
from gymnasium import spaces
from stable_baselines3.common.distributions import SquashedDiagGaussianDistribution, StateDependentNoiseDistribution
from stable_baselines3.common.policies import BaseModel, BasePolicy
from stable_baselines3.common.preprocessing import get_action_dim
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor, FlattenExtractor, get_actor_critic_arch
from stable_baselines3.common.type_aliases import PyTorchObs, Schedule
from torch import nn

from sb3_xinet.blocks import ACTOR, CRITIC, OFENET, BlockEntry, branch_role, critic_name
from sb3_xinet.common.checks import check_int, check_number
from sb3_xinet.cost import LayerPrice, Pricing, parameter_price, parameter_pricing
from sb3_xinet.gates import ESTIMATORS, GateEstimator
from sb3_xinet.nets import GatedBlock, GatedMLP, Optimizers, remove_input_columns, scale_input_columns
from sb3_xinet.ofenet import OFENet, flat_observations
from sb3_xinet.surgery import keep_index, slice_parameter_

# Same clipping of the log standard deviation as SB3's SAC actor
LOG_STD_MAX = 2
LOG_STD_MIN = -20

Gates = Literal["all", "ofenet", "none"]
GATES: tuple[str, ...] = ("all", "ofenet", "none")


def gated_parameters(module: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """(weights, thetas) of a module."""
    weights, thetas = [], []
    for name, param in module.named_parameters():
        (thetas if name.endswith("gate.theta") else weights).append(param)
    return weights, thetas


def make_optimizer(
    optimizer_class: type[th.optim.Optimizer], module_or_params, lr: float, theta_lr: float, kwargs: dict[str, Any]
) -> th.optim.Optimizer:
    """An optimizer with the weights in one group and the thetas, if any, in a group marked ``theta=True``.

    The mark lets the learning-rate schedule skip the thetas, which keep their own learning rate.
    """
    weights, thetas = module_or_params if isinstance(module_or_params, tuple) else gated_parameters(module_or_params)
    groups: list[dict[str, Any]] = [{"params": weights, "lr": lr}]
    if thetas:
        groups.append({"params": thetas, "lr": theta_lr, "theta": True})
    return optimizer_class(groups, **kwargs)


def check_policy_arguments(
    log_std_init: float | None,
    clip_mean: float,
    gates: str,
    gate_estimator: str,
    n_critics: int,
    ofenet_learning_rate: float,
    theta_learning_rate: float,
) -> None:
    """Validate the policy's own arguments; a ValueError names the bad one."""
    if log_std_init is not None:
        check_number("log_std_init", log_std_init)
    check_number("clip_mean", clip_mean, minimum=0)
    if gates not in GATES:
        raise ValueError(f"gates must be one of {GATES}, got {gates!r}")
    if gate_estimator not in ESTIMATORS:
        raise ValueError(f"gate_estimator must be one of {ESTIMATORS}, got {gate_estimator!r}")
    check_int("n_critics", n_critics, 1)
    check_number("ofenet_learning_rate", ofenet_learning_rate, positive=True)
    check_number("theta_learning_rate", theta_learning_rate, positive=True)


@th.no_grad()
def copy_thetas_(sources: list[nn.Parameter], targets: list[nn.Parameter]) -> None:
    """Copy thetas into others in place on the parameters (not through ``.data``, which SB3's ``polyak_update``
    writes): their version counters move, so a frozen gate sees the change (:meth:`BernoulliGate._all_on`)."""
    for source, target in zip(sources, targets, strict=True):
        target.copy_(source)


class XiNetActor(BasePolicy):
    """SAC actor on OFENet's state features: gated hidden layers, then the mean and log-std heads.

    :param ofenet: the policy's OFENet (held by reference, not a submodule)
    :param net_arch: units of each hidden layer
    :param gated: gate the hidden units
    :param log_std_init: initial log standard deviation of the actions, the same in every state (None: the
        log-std head keeps PyTorch's default initialisation; with gSDE, SB3's -3)
    :param use_sde: generalized State-Dependent Exploration (Raffin et al., 2022), as SB3's SAC actor: the noise
        is the last hidden layer's output times an exploration matrix with one row per unit of that layer, whose
        standard deviations (``log_std``, a parameter) lose their rows with the units pruning removes
    :param full_std: gSDE: one standard deviation per (unit, action) rather than per unit
    :param use_expln: gSDE: ``expln`` instead of ``exp`` to keep the standard deviation positive
    :param clip_mean: gSDE: clip the mean action to ``[-clip_mean, clip_mean]`` before the tanh (0: no clip)
    """

    action_space: spaces.Box

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Box,
        ofenet: OFENet,
        net_arch: list[int],
        activation_fn: type[nn.Module] = nn.ReLU,
        gated: bool = True,
        estimator: GateEstimator = "straight_through",
        normalize_images: bool = True,
        log_std_init: float | None = None,
        use_sde: bool = False,
        full_std: bool = True,
        use_expln: bool = False,
        clip_mean: float = 2.0,
    ) -> None:
        super().__init__(observation_space, action_space, normalize_images=normalize_images, squash_output=True)
        self._ofenet = (ofenet,)  # a tuple keeps the shared OFENet out of this module's parameters
        self.net_arch = list(net_arch)
        self.activation_fn = activation_fn
        self.gated = gated
        self.estimator = estimator
        self.log_std_init = log_std_init
        self.use_sde, self.full_std, self.use_expln, self.clip_mean = use_sde, full_std, use_expln, clip_mean
        action_dim = get_action_dim(self.action_space)
        self.latent_pi = GatedMLP(
            ofenet.state_features_dim, net_arch, activation_fn, batch_norm=False, gated=gated, estimator=estimator
        )
        width = self.latent_pi.out_features
        self.log_std: nn.Linear | nn.Parameter
        self.action_dist: SquashedDiagGaussianDistribution | StateDependentNoiseDistribution
        if use_sde:
            # learn_features: the noise's gradient reaches the hidden layers, as in SB3's SAC actor
            self.action_dist = StateDependentNoiseDistribution(
                action_dim, full_std=full_std, use_expln=use_expln, learn_features=True, squash_output=True
            )
            self.mu, self.log_std = self.action_dist.proba_distribution_net(
                latent_dim=width, latent_sde_dim=width, log_std_init=-3.0 if log_std_init is None else log_std_init
            )
        else:
            self.action_dist = SquashedDiagGaussianDistribution(action_dim)
            self.mu = nn.Linear(width, action_dim)
            self.log_std = nn.Linear(width, action_dim)
            if log_std_init is not None:
                nn.init.zeros_(self.log_std.weight)
                nn.init.constant_(self.log_std.bias, log_std_init)
        if use_sde and not net_arch:
            raise ValueError("gSDE needs at least one hidden layer in the actor (net_arch): its noise reads it")
        for consumer in [self.latent_pi] if net_arch else [self.mu, self.log_std]:
            ofenet.register_consumer("state", consumer)

    @property
    def ofenet(self) -> OFENet:
        return self._ofenet[0]

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(
            ofenet=self.ofenet,
            net_arch=self.latent_pi.units,
            activation_fn=self.activation_fn,
            gated=self.gated,
            estimator=self.estimator,
            log_std_init=self.log_std_init,
            use_sde=self.use_sde,
            full_std=self.full_std,
            use_expln=self.use_expln,
            clip_mean=self.clip_mean,
        )
        return data

    def state_features(self, obs: PyTorchObs) -> th.Tensor:
        """``phi_s(obs)`` in inference mode; OFENet is not trained by RL losses, so no graph is kept."""
        obs = flat_observations(obs, self.observation_space, self.normalize_images)
        with th.no_grad():
            return self.ofenet.phi_s(obs)

    def dist_params(self, features: th.Tensor, stochastic_gates: bool) -> tuple[th.Tensor, th.Tensor, dict[str, th.Tensor]]:
        """Mean, log standard deviation and the distribution's other inputs (gSDE: ``latent_sde``), as SB3's
        ``Actor.get_action_dist_params``."""
        latent = self.latent_pi(features, stochastic=stochastic_gates)
        mean_actions = self.mu(latent)
        if self.use_sde:
            if self.clip_mean > 0:
                mean_actions = th.clamp(mean_actions, -self.clip_mean, self.clip_mean)
            return mean_actions, self.log_std, {"latent_sde": latent}  # type: ignore[return-value]
        return mean_actions, th.clamp(self.log_std(latent), LOG_STD_MIN, LOG_STD_MAX), {}  # type: ignore[operator]

    def forward(self, obs: PyTorchObs, deterministic: bool = False) -> th.Tensor:
        mean_actions, log_std, kwargs = self.dist_params(self.state_features(obs), stochastic_gates=self.training)
        return self.action_dist.actions_from_params(mean_actions, log_std, deterministic=deterministic, **kwargs)

    def action_log_prob(self, obs: PyTorchObs) -> tuple[th.Tensor, th.Tensor]:
        return self.action_log_prob_from_features(self.state_features(obs), stochastic_gates=self.training)

    def action_log_prob_from_features(self, features: th.Tensor, stochastic_gates: bool) -> tuple[th.Tensor, th.Tensor]:
        mean_actions, log_std, kwargs = self.dist_params(features, stochastic_gates)
        return self.action_dist.log_prob_from_params(mean_actions, log_std, **kwargs)

    def get_std(self) -> th.Tensor:
        """The standard deviations of gSDE's exploration matrix (SB3's ``Actor.get_std``)."""
        assert isinstance(self.action_dist, StateDependentNoiseDistribution), "get_std() is only available when using gSDE"
        return self.action_dist.get_std(self.log_std)  # type: ignore[arg-type]

    def reset_noise(self, batch_size: int = 1) -> None:
        """Sample new exploration matrices, when using gSDE (SB3's ``Actor.reset_noise``)."""
        assert isinstance(self.action_dist, StateDependentNoiseDistribution), "reset_noise() is only available when using gSDE"
        self.action_dist.sample_weights(self.log_std, batch_size=batch_size)  # type: ignore[arg-type]

    @contextmanager
    def _new_noise_rows(self) -> Iterator[None]:
        """Around a change of ``log_std``'s rows (removal, fold): first let go of every tensor gSDE keeps from
        its last sampling, so that no autograd graph still holds ``log_std`` when its rows change (torch would
        then expect gradients of the old shape); afterwards sample as many exploration matrices as before."""
        dist = self.action_dist
        batch_size = len(dist.exploration_matrices)  # type: ignore[union-attr]
        dist.weights_dist = dist.exploration_mat = dist.exploration_matrices = None  # type: ignore[union-attr]
        dist.distribution = dist._latent_sde = None  # type: ignore[union-attr]
        yield
        dist.latent_sde_dim = self.latent_pi.out_features  # type: ignore[union-attr]
        self.reset_noise(batch_size)

    def _predict(self, observation: PyTorchObs, deterministic: bool = False) -> th.Tensor:
        return self(observation, deterministic)

    def expected_cost(self, expected_in: th.Tensor, price: LayerPrice = parameter_price) -> th.Tensor:
        """Expected cost of the hidden layers and of the two heads (mean and log-std; with gSDE the log-std is
        priced as a layer of its columns without bias: one row of standard deviations per unit)."""
        cost, width = self.latent_pi.expected_cost(expected_in, price)
        actions = th.as_tensor(float(self.mu.out_features))
        cost = cost + price(width, actions, th.ones(()), 0)
        if self.use_sde:
            # weights and biases of a layer of width x columns, less the biases: width * columns
            columns = actions if self.full_std else th.ones(())
            return cost + price(width, columns, th.ones(()), 0) - price(th.zeros(()), columns, th.ones(()), 0)
        return cost + price(width, actions, th.ones(()), 0)

    def remove_units(self, layer_id: int, units: list[int], optimizers: Optimizers = ()) -> None:
        """Remove hidden units; the heads lose the matching columns (gSDE: the log-std its rows) when the last
        hidden layer shrinks."""
        columns = self.latent_pi.remove_units(layer_id, units, optimizers)
        if not columns:
            return
        remove_input_columns(self.mu, columns, optimizers)
        if self.use_sde:
            with self._new_noise_rows():
                keep = keep_index(self.log_std.shape[0], columns, self.log_std.device)
                slice_parameter_(self.log_std, 0, keep, optimizers)  # type: ignore[arg-type]
        else:
            remove_input_columns(self.log_std, columns, optimizers)  # type: ignore[arg-type]

    def fold_gates_(self, optimizers: Optimizers = ()) -> None:
        """Drop the gates, their thetas moved into the weights that read each unit (mean gates: exact). With gSDE
        the noise of unit i, ``h_i * theta_i * E_i``, keeps its spread as ``h_i * E'_i`` with ``std'_i =
        theta_i * std_i``; the exploration matrices are sampled anew."""
        columns, factors = self.latent_pi.fold_gates_(optimizers)
        if columns:
            scale_input_columns(self.mu, columns, factors, optimizers)
            if self.use_sde:
                with self._new_noise_rows():
                    with th.no_grad():
                        rows = th.as_tensor(columns, device=self.log_std.device)
                        std = self.action_dist.get_std(self.log_std)[rows] * factors.to(self.log_std).unsqueeze(1)  # type: ignore[union-attr]
                        if not self.full_std:
                            std = std[:, :1]
                        # the inverse of exp, or of expln (exp below 0, log1p(x) + 1 above)
                        inverse = th.where(std <= 1, th.log(std), th.expm1(std - 1)) if self.use_expln else th.log(std)
                        self.log_std[rows] = inverse  # type: ignore[index]
            else:
                scale_input_columns(self.log_std, columns, factors, optimizers)  # type: ignore[arg-type]
        self.gated = False


class QNetwork(nn.Module):
    """One Q-function on OFENet's state-action features: gated hidden layers and a linear output of ``n_outputs``
    values (1 for SAC's Q-value, the quantiles for TQC)."""

    def __init__(
        self,
        in_features: int,
        units: list[int],
        activation_fn: type[nn.Module],
        gated: bool,
        estimator: GateEstimator,
        n_outputs: int = 1,
    ):
        super().__init__()
        self.latent = GatedMLP(in_features, units, activation_fn, batch_norm=False, gated=gated, estimator=estimator)
        self.out = nn.Linear(self.latent.out_features, n_outputs)

    @property
    def first_layer(self) -> nn.Module:
        """The module whose input is ``phi_sa``."""
        return self.latent if len(self.latent.layers) else self.out

    def forward(self, z_sa: th.Tensor, stochastic: bool = False) -> th.Tensor:
        return self.out(self.latent(z_sa, stochastic=stochastic))

    def expected_cost(self, expected_in: th.Tensor, price: LayerPrice = parameter_price) -> th.Tensor:
        """Expected cost of the hidden layers and of the output layer."""
        cost, width = self.latent.expected_cost(expected_in, price)
        return cost + price(width, th.as_tensor(float(self.out.out_features)), th.ones(()), 0)

    def remove_units(self, layer_id: int, units: list[int], optimizers: Optimizers = ()) -> None:
        columns = self.latent.remove_units(layer_id, units, optimizers)
        if columns:
            remove_input_columns(self.out, columns, optimizers)

    def fold_gates_(self, optimizers: Optimizers = ()) -> None:
        columns, factors = self.latent.fold_gates_(optimizers)
        if columns:
            scale_input_columns(self.out, columns, factors, optimizers)


class XiNetCritic(BaseModel):
    """Twin (or ``n_critics``) Q-functions on ``phi_sa(s, a)``; SB3's critic would read ``cat(features, a)``.

    :param ofenet: the policy's OFENet (held by reference, not a submodule)
    :param net_arch: units of each hidden layer, one list per critic (they are pruned independently)
    :param n_outputs: values per critic: 1 (a Q-value), or the number of quantiles of a distributional critic
    """

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Box,
        ofenet: OFENet,
        net_arch: list[list[int]],
        activation_fn: type[nn.Module] = nn.ReLU,
        gated: bool = True,
        estimator: GateEstimator = "straight_through",
        normalize_images: bool = True,
        n_outputs: int = 1,
    ) -> None:
        super().__init__(observation_space, action_space, normalize_images=normalize_images)
        self._ofenet = (ofenet,)
        self.q_networks = nn.ModuleList(
            QNetwork(ofenet.state_action_features_dim, units, activation_fn, gated, estimator, n_outputs) for units in net_arch
        )
        for q_net in self.q_networks:
            ofenet.register_consumer("state_action", q_net.first_layer)

    @property
    def ofenet(self) -> OFENet:
        return self._ofenet[0]

    def forward(self, obs: PyTorchObs, actions: th.Tensor) -> tuple[th.Tensor, ...]:
        """Q-values of ``(obs, actions)``, the signature of SB3's ``ContinuousCritic``."""
        obs = flat_observations(obs, self.observation_space, self.normalize_images)
        return self.q_values(self.ofenet.phi_sa(obs, actions), stochastic=self.training)

    def q_values(self, z_sa: th.Tensor, stochastic: bool) -> tuple[th.Tensor, ...]:
        return tuple(q_net(z_sa, stochastic) for q_net in self.q_networks)


class XiNetPolicy(BasePolicy):
    """Policy of XiNetSAC: OFENet, actor, critics and target critics (alias ``"MlpPolicy"``); XiNetTQC's
    (:class:`XiNetTQCPolicy`) is this one with quantile critics.

    SAC's keyword arguments keep their meaning; ``net_arch`` gives the actor's and critics' hidden layers
    (a list for both, or ``dict(pi=[...], qf=[...])``).

    :param ofenet_kwargs: keyword arguments of :class:`~sb3_xinet.ofenet.OFENet` (``state_units``,
        ``state_action_units``, ``target_dim``, ``batch_norm``); default 6 x 40 units per branch
    :param gates: which hidden units are gated: ``"all"``, ``"ofenet"`` or ``"none"`` (dense baseline)
    :param gate_estimator: ``"straight_through"`` or ``"reinforce"`` (unbiased but noisier; the loss scales are the
        thetas' gradient RMS, so its noise makes the same ``cost_weight`` prune harder: use a smaller one)
    :param ofenet_learning_rate: learning rate of OFENet's aux-loss optimizer
    :param theta_learning_rate: learning rate of every theta (its own parameter group)
    :param architecture: current widths of a pruned policy; written by pruning and read on load, leave it None
    :param use_sde: gSDE exploration (see :class:`XiNetActor`; set by the algorithm's ``use_sde``)
    :param log_std_init: initial log standard deviation of the actions (None: PyTorch's default initialisation
        of the log-std head; with gSDE, SB3's -3)
    :param use_expln: gSDE: ``expln`` instead of ``exp`` for the standard deviation
    :param clip_mean: gSDE: clip the mean action before the tanh

    SB3's other SAC policy options are refused with a ValueError when set: ``features_extractor_class``,
    ``features_extractor_kwargs`` and ``share_features_extractor`` (OFENet is the feature extractor, shared by
    the actor and the critics and trained by its own loss; size it with ``ofenet_kwargs``).
    """

    actor: XiNetActor
    critic: XiNetCritic
    critic_target: XiNetCritic
    # the critics output quantiles (TQC) rather than one Q-value each; tells the algorithms' saves apart
    quantile_critics: ClassVar[bool] = False

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Box,
        lr_schedule: Schedule,
        net_arch: list[int] | dict[str, list[int]] | None = None,
        activation_fn: type[nn.Module] = nn.ReLU,
        use_sde: bool = False,
        log_std_init: float | None = None,
        use_expln: bool = False,
        clip_mean: float = 2.0,
        features_extractor_class: type[BaseFeaturesExtractor] | None = None,
        features_extractor_kwargs: dict[str, Any] | None = None,
        normalize_images: bool = True,
        optimizer_class: type[th.optim.Optimizer] = th.optim.Adam,
        optimizer_kwargs: dict[str, Any] | None = None,
        n_critics: int = 2,
        share_features_extractor: bool = False,
        ofenet_kwargs: dict[str, Any] | None = None,
        gates: Gates = "all",
        gate_estimator: GateEstimator = "straight_through",
        ofenet_learning_rate: float = 3e-4,
        theta_learning_rate: float = 1e-3,
        architecture: dict[str, Any] | None = None,
    ) -> None:
        if features_extractor_class not in (None, FlattenExtractor) or features_extractor_kwargs or share_features_extractor:
            raise ValueError(
                "OFENet is the XiNet policies' feature extractor, shared by the actor and the critics and trained by its "
                "own aux loss: features_extractor_class, features_extractor_kwargs and share_features_extractor do not "
                "apply; size OFENet with ofenet_kwargs"
            )
        check_policy_arguments(
            log_std_init, clip_mean, gates, gate_estimator, n_critics, ofenet_learning_rate, theta_learning_rate
        )
        if optimizer_class in (th.optim.Adam, th.optim.AdamW) and not {"fused", "foreach"} & set(optimizer_kwargs or {}):
            # one kernel for all parameters: 3x faster than the per-parameter loop torch uses on CPU
            optimizer_kwargs = {**(optimizer_kwargs or {}), "fused": True}
        super().__init__(
            observation_space,
            action_space,
            optimizer_class=optimizer_class,
            optimizer_kwargs=optimizer_kwargs,
            squash_output=True,
            normalize_images=normalize_images,
        )
        self.net_arch = [256, 256] if net_arch is None else net_arch
        self.activation_fn = activation_fn
        self.n_critics = n_critics
        self.ofenet_kwargs = dict(ofenet_kwargs or {})
        self.gates = gates
        self.gate_estimator = gate_estimator
        self.ofenet_learning_rate = ofenet_learning_rate
        self.theta_learning_rate = theta_learning_rate
        self.log_std_init = log_std_init
        self.use_sde, self.use_expln, self.clip_mean = use_sde, use_expln, clip_mean
        self._warned_floors: set[tuple[str, int]] = set()
        self._build(lr_schedule, architecture)

    def _build(self, lr_schedule: Schedule, architecture: dict[str, Any] | None) -> None:
        actor_arch, critic_arch = get_actor_critic_arch(self.net_arch)
        architecture = architecture or {}
        self.ofenet = OFENet.from_spaces(
            self.observation_space,
            self.action_space,
            **{**self.ofenet_kwargs, **architecture.get("ofenet", {})},
            gated=self.gates != "none",
            estimator=self.gate_estimator,
        )
        self.actor = self.make_actor(architecture.get("actor", actor_arch))
        critic_units = architecture.get("critics", [critic_arch] * self.n_critics)
        self.critic = self.make_critic(critic_units)
        self.critic_target = self.make_critic(critic_units)
        self.critic_target.load_state_dict(self.critic.state_dict())
        self.critic_target.set_training_mode(False)
        for theta in gated_parameters(self.critic_target)[1]:
            theta.requires_grad_(False)  # copies of the critics' (critic_parameters): a frozen gate at 1 is the identity
        self._registry = self._make_registry()
        self._heads = tuple(entry for entry in self._registry if not entry.whole_layers)

        lr = lr_schedule(1)  # type: ignore[call-arg]
        self.actor.optimizer = make_optimizer(
            self.optimizer_class, self.actor, lr, self.theta_learning_rate, self.optimizer_kwargs
        )
        self.critic.optimizer = make_optimizer(
            self.optimizer_class, self.critic, lr, self.theta_learning_rate, self.optimizer_kwargs
        )
        ofenet_params = (self.ofenet.weight_parameters(), self.ofenet.gate_parameters())
        self.ofenet_optimizer = make_optimizer(
            self.optimizer_class, ofenet_params, self.ofenet_learning_rate, self.theta_learning_rate, self.optimizer_kwargs
        )

    def _head_kwargs(self) -> dict[str, Any]:
        return dict(
            activation_fn=self.activation_fn,
            gated=self.gates == "all",
            estimator=self.gate_estimator,
            normalize_images=self.normalize_images,
        )

    def make_actor(self, net_arch: list[int]) -> XiNetActor:
        """The actor on this policy's OFENet, with hidden layers of ``net_arch`` units."""
        return XiNetActor(
            self.observation_space,
            self.action_space,
            self.ofenet,
            net_arch,
            log_std_init=self.log_std_init,
            use_sde=self.use_sde,
            use_expln=self.use_expln,
            clip_mean=self.clip_mean,
            **self._head_kwargs(),
        )

    @property
    def critic_outputs(self) -> int:
        """Values per critic: one Q-value (a distributional policy gives more)."""
        return 1

    def make_critic(self, net_arch: list[list[int]]) -> XiNetCritic:
        """The critics on this policy's OFENet, one list of hidden units per critic, ``critic_outputs`` values
        each."""
        return XiNetCritic(
            self.observation_space,
            self.action_space,
            self.ofenet,
            net_arch,
            n_outputs=self.critic_outputs,
            **self._head_kwargs(),
        )

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(
            net_arch=self.net_arch,
            activation_fn=self.activation_fn,
            lr_schedule=self._dummy_schedule,
            optimizer_class=self.optimizer_class,
            optimizer_kwargs=self.optimizer_kwargs,
            n_critics=self.n_critics,
            ofenet_kwargs=self.ofenet_kwargs,
            gates=self.gates,
            gate_estimator=self.gate_estimator,
            ofenet_learning_rate=self.ofenet_learning_rate,
            theta_learning_rate=self.theta_learning_rate,
            log_std_init=self.log_std_init,
            use_sde=self.use_sde,
            use_expln=self.use_expln,
            clip_mean=self.clip_mean,
            architecture=self.architecture(),
        )
        return data

    def reset_noise(self, batch_size: int = 1) -> None:
        """Sample new gSDE exploration matrices (SB3's ``SACPolicy.reset_noise``)."""
        self.actor.reset_noise(batch_size=batch_size)

    def architecture(self) -> dict[str, Any]:
        """Current widths of every network, as plain data (the ``architecture`` keyword)."""
        return {
            "ofenet": self.ofenet.architecture(),
            "actor": self.actor.latent_pi.units,
            "critics": [q_net.latent.units for q_net in self.critic.q_networks],
        }

    def networks(self) -> dict[str, nn.Module]:
        """The trained networks, by name (target critics are copies and are not listed)."""
        nets: dict[str, nn.Module] = {OFENET: self.ofenet, ACTOR: self.actor}
        nets.update({critic_name(i): q_net for i, q_net in enumerate(self.critic.q_networks)})
        return nets

    def registry(self) -> tuple[BlockEntry, ...]:
        """Every gated block with its role, the network that removes its units and that network's target copy
        (see :mod:`sb3_xinet.blocks`): OFENet's two branches, the actor's hidden layers, each critic's. Made once
        per build: pruning changes the blocks' widths, never the blocks."""
        return self._registry

    def _make_registry(self) -> tuple[BlockEntry, ...]:
        entries = [BlockEntry(branch_role(branch), block) for branch, block in self.ofenet.blocks().items()]
        entries.append(BlockEntry(ACTOR, self.actor.latent_pi, owner=self.actor))
        for i, (q_net, q_target) in enumerate(zip(self.critic.q_networks, self.critic_target.q_networks, strict=True)):
            entries.append(BlockEntry(CRITIC, q_net.latent, index=i, owner=q_net, target=q_target))
        return tuple(entries)

    def gated_blocks(self) -> dict[str, GatedBlock]:
        """Every gated block, by name (``ofenet.state``, ``ofenet.state_action``, ``actor``, ``critic<i>``)."""
        return {entry.name: entry.block for entry in self.registry()}

    def heads(self) -> tuple[BlockEntry, ...]:
        """The registry's entries of the actor's and the critics' hidden layers (the blocks whose layers must
        keep a unit)."""
        return self._heads

    def expected_cost(self, pricing: Pricing = parameter_pricing) -> th.Tensor:
        """Expected cost of OFENet, actor and critics, each part priced by ``pricing`` (see
        :data:`~sb3_xinet.cost.Pricing`): the quantity the cost-aware regularizer charges."""
        cost_ofenet, width_s, width_sa = self.ofenet.expected_cost(pricing)
        cost_actor = self.actor.expected_cost(width_s, pricing("actor"))
        cost_critics = sum(q_net.expected_cost(width_sa, pricing("critic")) for q_net in self.critic.q_networks)
        return cost_ofenet + cost_actor + cost_critics

    def expected_params(self) -> th.Tensor:
        """P(theta): the expected parameter count of OFENet, actor and critics."""
        return self.expected_cost(parameter_pricing)

    def optimizers(self) -> list[th.optim.Optimizer]:
        return [self.ofenet_optimizer, self.actor.optimizer, self.critic.optimizer]

    def apply_optimizer_kwargs(self) -> None:
        """Give every parameter group this policy's ``optimizer_kwargs`` again. Loading an optimizer's state
        also restores its groups' settings as they were saved (for a save from an earlier version, without the
        fused Adam kernel); the policy's settings are the ones to train with."""
        for optimizer in self.optimizers():
            for group in optimizer.param_groups:
                group.update({key: value for key, value in self.optimizer_kwargs.items() if key in group})

    def project_heads_(self) -> None:
        """Project the thetas of the actor's and the critics' hidden layers onto their feasible sets (OFENet's
        are projected by the aux step that moves them)."""
        for entry in self.heads():
            entry.block.project_()

    def prune(self, threshold: float) -> dict[str, dict[int, list[int]]]:
        """Remove every unit whose theta is at or below ``threshold``, from each network, its target copy and
        every optimizer state. Returns the removed units per block and layer id.

        A hidden layer of the actor or of a critic keeps at least one unit (its gates' projection keeps
        ``sum(theta) >= 1``, and the survivor of a layer whose every theta is at the threshold gets theta 1).
        A layer held at that floor means the cost weight would empty it: a ``UserWarning`` names it, once.
        """
        optimizers = self.optimizers()
        removed = {branch_role(branch): found for branch, found in self.ofenet.prune(threshold, optimizers).items()}
        heads = self.heads()
        for entry in heads:
            found = entry.block.units_at_or_below(threshold)
            for layer_id, units in found.items():
                entry.owner.remove_units(layer_id, units, optimizers)
                if entry.target is not None:
                    entry.target.remove_units(layer_id, units)
            if found:
                removed[entry.name] = found
        self.project_heads_()
        for entry in heads:
            for layer_id in entry.block.layers_at_floor():
                if (entry.name, layer_id) not in self._warned_floors:
                    self._warned_floors.add((entry.name, layer_id))
                    warnings.warn(
                        f"XiNet: the cost weight would remove every unit of {entry.name} layer {layer_id}, which would "
                        f"make the {entry.role}'s output constant; the layer keeps one unit. "
                        "A smaller cost_weight keeps more.",
                        stacklevel=2,
                    )
        self.sync_target_thetas()
        return removed

    def fold_gates_(self) -> None:
        """Drop every gate of every network, each surviving theta folded into the weights that read its unit
        (and every optimizer state kept consistent): the networks compute with mean gates what they computed
        before, and from now on train as plain (OFENet-)SAC networks at their current widths."""
        optimizers = self.optimizers()
        self.ofenet.fold_gates_(optimizers)
        self.actor.fold_gates_(optimizers)
        for q_net, q_target in zip(self.critic.q_networks, self.critic_target.q_networks, strict=True):
            q_net.fold_gates_(optimizers)
            q_target.fold_gates_()
        self.gates = "none"

    def sync_target_thetas(self) -> None:
        """Give each target critic the thetas of its critic (see :meth:`critic_parameters`)."""
        _, thetas, _, target_thetas = self.critic_parameters()
        copy_thetas_(thetas, target_thetas)

    def critic_parameters(self) -> tuple[list[nn.Parameter], list[nn.Parameter], list[nn.Parameter], list[nn.Parameter]]:
        """(weights, thetas, target weights, target thetas) of the critics.

        The targets' weights follow the critics' by Polyak averaging; their thetas are the critics' own. A theta
        only says whether a unit is still in use: an averaged one would lag behind its critic's, and when the unit
        goes (its critic's theta at the threshold), the target would lose a unit still scaled by up to tens of
        percent, and its Q-values would jump.
        """
        weights, thetas = gated_parameters(self.critic)
        target_weights, target_thetas = gated_parameters(self.critic_target)
        return weights, thetas, target_weights, target_thetas

    def obs_to_float(self, obs: PyTorchObs) -> th.Tensor:
        """Observations as OFENet reads them (SB3's preprocessing, float32, flat)."""
        return flat_observations(obs, self.observation_space, self.normalize_images)

    def forward(self, obs: PyTorchObs, deterministic: bool = False) -> th.Tensor:
        return self._predict(obs, deterministic=deterministic)

    def _predict(self, observation: PyTorchObs, deterministic: bool = False) -> th.Tensor:
        return self.actor(observation, deterministic)

    def set_training_mode(self, mode: bool) -> None:
        """Train/eval mode of actor and critic: sampled or mean gates. OFENet's mode is chosen per call."""
        self.actor.set_training_mode(mode)
        self.critic.set_training_mode(mode)
        self.training = mode


MlpPolicy = XiNetPolicy


class XiNetTQCPolicy(XiNetPolicy):
    """Policy of XiNetTQC: :class:`XiNetPolicy` whose critics each output ``n_quantiles`` quantiles of the return
    distribution (sb3-contrib's ``TQCPolicy`` on OFENet's features). Alias ``"MlpPolicy"`` of XiNetTQC.

    :param n_quantiles: quantiles per critic
    :param n_critics: number of critics (sb3-contrib's default: 2)
    """

    quantile_critics: ClassVar[bool] = True

    def __init__(self, *args: Any, n_quantiles: int = 25, n_critics: int = 2, **kwargs: Any) -> None:
        self.n_quantiles = check_int("n_quantiles", n_quantiles, 1)
        super().__init__(*args, n_critics=n_critics, **kwargs)

    @property
    def critic_outputs(self) -> int:
        """The quantiles of each critic."""
        return self.n_quantiles

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(n_quantiles=self.n_quantiles)
        return data
