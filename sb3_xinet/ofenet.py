"""OFENet (Ota et al., ICML 2020) with every hidden unit gated, able to remove its own units.

- state branch ``phi_s(s)``: DenseNet layers on the observation, output ``[s, h_1, ..., h_K]``;
- state-action branch ``phi_sa(s, a)``: DenseNet layers on ``[phi_s(s), a]``, output
  ``[phi_s(s), a, g_1, ..., g_K]``;
- aux head: a linear layer from ``phi_sa`` to the next observation (its first ``target_dim`` entries);
  OFENet is trained by this aux loss only.

Two modes, chosen per call and never by ``nn.Module.train()`` (SB3's ``set_training_mode`` toggles that flag
for the whole policy): the aux pass samples the gates and normalises with batch statistics (updating the
running ones); every RL pass (:meth:`phi_s`, :meth:`phi_sa`) uses the running statistics and the gates' means,
and leaves all state untouched. Because the concat order keeps ``phi_s`` at the front of ``phi_sa``, a removed
state unit is one column index in ``phi_s``, in ``phi_sa`` and in every consumer of either.
"""

from collections.abc import Sequence
from typing import Any, Literal
from weakref import ReferenceType, ref

import torch as th
import torch.nn.functional as F
from gymnasium import spaces
from stable_baselines3.common.preprocessing import get_action_dim, get_flattened_obs_dim, is_image_space, preprocess_obs
from torch import nn

from sb3_xinet.blocks import HEAD, branch_role
from sb3_xinet.common.checks import check_int
from sb3_xinet.common.errors import UnsupportedSpaceError
from sb3_xinet.cost import Pricing, parameter_pricing
from sb3_xinet.gates import GateEstimator
from sb3_xinet.nets import GatedDenseNet, Optimizers, check_units, remove_input_columns, scale_input_columns

Branch = Literal["state", "state_action"]
BRANCHES: tuple[Branch, ...] = ("state", "state_action")


def observation_dim(space: spaces.Space) -> int:
    """Length of the vector OFENet reads for an observation space: SB3's preprocessing, flattened (a Box as it
    is, Discrete / MultiDiscrete as one-hot codes, MultiBinary as 0/1). Images and Dict spaces are refused."""
    if isinstance(space, spaces.Box) and is_image_space(space, check_channels=False):
        raise UnsupportedSpaceError(
            f"OFENet reads a feature vector, not images: got the image observation space {space}. Use an "
            "algorithm with a CNN policy, or observe a feature vector."
        )
    if not isinstance(space, (spaces.Box, spaces.Discrete, spaces.MultiDiscrete, spaces.MultiBinary)):
        raise UnsupportedSpaceError(
            f"OFENet reads a flat observation vector (Box, Discrete, MultiDiscrete or MultiBinary observation "
            f"spaces), got {space}. Flatten Dict observations first (gymnasium.wrappers.FlattenObservation)."
        )
    return get_flattened_obs_dim(space)


def action_dim(space: spaces.Space) -> int:
    """Length of the flat action vector of a Box action space (SAC and TQC act in continuous spaces)."""
    if not isinstance(space, spaces.Box):
        raise UnsupportedSpaceError(f"XiNet algorithms need a Box action space (continuous actions), got {space}")
    return get_action_dim(space)


def flat_observations(obs: th.Tensor | dict, space: spaces.Space, normalize_images: bool = True) -> th.Tensor:
    """A batch of observations as OFENet reads them: SB3's preprocessing, float32, flattened to (batch, dim)."""
    return preprocess_obs(obs, space, normalize_images=normalize_images).float().flatten(1)  # type: ignore[union-attr]


class OFENet(nn.Module):
    """Online Feature Extractor Network with Bernoulli-gated, removable units.

    :param obs_dim: observation dimension
    :param action_dim: action dimension
    :param state_units: units of each state-branch layer (default 6 x 40, the OFENet Hopper config)
    :param state_action_units: units of each state-action-branch layer
    :param target_dim: predict the first ``target_dim`` entries of the next observation (default: all)
    :param state_layer_ids: ids of the existing state layers, only when rebuilding a pruned OFENet
    :param state_action_layer_ids: same for the state-action branch
    :param batch_norm: BatchNorm on every layer (as OFENet)
    :param gated: gate the units (False gives the dense OFENet baseline)
    :param estimator: gradient estimator of the gates
    :param layer_gates: every layer also gets a layer gate, so that pruning can remove it whole (the time cost
        model sets it)
    """

    def __init__(
        self,
        obs_dim: int,
        action_dim: int,
        state_units: Sequence[int] = (40,) * 6,
        state_action_units: Sequence[int] = (40,) * 6,
        target_dim: int | None = None,
        state_layer_ids: Sequence[int] | None = None,
        state_action_layer_ids: Sequence[int] | None = None,
        batch_norm: bool = True,
        gated: bool = True,
        estimator: GateEstimator = "straight_through",
        layer_gates: bool = False,
    ) -> None:
        super().__init__()
        obs_dim = check_int("OFENet: obs_dim", obs_dim, 1)
        action_dim = check_int("OFENet: action_dim", action_dim, 1)
        target_dim = check_int("OFENet: target_dim", obs_dim if target_dim is None else target_dim, 1, obs_dim)
        check_units(state_units, "OFENet state_units", allow_empty=state_layer_ids is not None)
        check_units(state_action_units, "OFENet state_action_units", allow_empty=state_action_layer_ids is not None)
        self.obs_dim = obs_dim
        self.action_dim = action_dim
        self.target_dim = target_dim
        block_kwargs: dict[str, Any] = dict(
            activation_fn=nn.SiLU, batch_norm=batch_norm, gated=gated, estimator=estimator, layer_gates=layer_gates
        )
        self.state = GatedDenseNet(obs_dim, state_units, state_layer_ids, **block_kwargs)
        self.state_action = GatedDenseNet(
            self.state.out_features + action_dim, state_action_units, state_action_layer_ids, **block_kwargs
        )
        self.head = nn.Linear(self.state_action.out_features, target_dim)
        self._consumers: dict[str, list[ReferenceType[nn.Module]]] = {branch: [] for branch in BRANCHES}
        self._init_weights()

    @classmethod
    def from_spaces(cls, observation_space: spaces.Space, action_space: spaces.Space, **kwargs: Any) -> "OFENet":
        """Build from Gymnasium spaces (see :func:`observation_dim` and :func:`action_dim` for those supported)."""
        return cls(observation_dim(observation_space), action_dim(action_space), **kwargs)

    def _init_weights(self) -> None:
        # Keras Dense defaults, as in the original OFENet: glorot-uniform kernels, zero biases
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)

    @property
    def state_features_dim(self) -> int:
        """Width of ``phi_s``."""
        return self.state.out_features

    @property
    def state_action_features_dim(self) -> int:
        """Width of ``phi_sa``."""
        return self.state_action.out_features

    def architecture(self) -> dict[str, Any]:
        """Keyword arguments that rebuild the current (possibly pruned) shapes."""
        return dict(
            state_units=self.state.units,
            state_action_units=self.state_action.units,
            state_layer_ids=list(self.state.layer_ids),
            state_action_layer_ids=list(self.state_action.layer_ids),
        )

    def _check_input(self, name: str, tensor: th.Tensor, width: int) -> None:
        if tensor.dim() != 2 or tensor.shape[1] != width:
            raise ValueError(f"OFENet expects {name} of shape (batch, {width}), got {tuple(tensor.shape)}")

    def phi_s(self, obs: th.Tensor, stochastic: bool = False, batch_stats: bool = False) -> th.Tensor:
        """State features. Defaults are the RL-pass mode: mean gates, running BatchNorm statistics."""
        self._check_input("observations", obs, self.obs_dim)
        return self.state(obs, stochastic, batch_stats)

    def phi_sa(self, obs: th.Tensor, actions: th.Tensor, stochastic: bool = False, batch_stats: bool = False) -> th.Tensor:
        """State-action features; stays differentiable w.r.t. ``actions`` (the SAC actor loss needs it)."""
        return self.phi_sa_from_state(self.phi_s(obs, stochastic, batch_stats), actions, stochastic, batch_stats)

    def phi_sa_from_state(
        self, z_s: th.Tensor, actions: th.Tensor, stochastic: bool = False, batch_stats: bool = False
    ) -> th.Tensor:
        """State-action features from already computed state features ``z_s = phi_s(obs)`` (same mode)."""
        self._check_input("actions", actions, self.action_dim)
        return self.state_action(th.cat([z_s, actions], dim=1), stochastic, batch_stats)

    def predict_next(self, obs: th.Tensor, actions: th.Tensor) -> th.Tensor:
        """Aux pass: sampled gates and batch statistics (which updates the running statistics)."""
        return self.head(self.phi_sa(obs, actions, stochastic=True, batch_stats=True))

    def aux_loss(
        self, obs: th.Tensor, actions: th.Tensor, next_obs: th.Tensor, reduction: Literal["mean", "none"] = "mean"
    ) -> th.Tensor:
        """Mean squared error of the next-observation prediction (``reduction="none"``: one value per sample)."""
        target = next_obs[:, : self.target_dim]
        errors = F.mse_loss(self.predict_next(obs, actions), target, reduction="none").mean(dim=1)
        return errors.mean() if reduction == "mean" else errors

    def blocks(self) -> dict[Branch, GatedDenseNet]:
        return {"state": self.state, "state_action": self.state_action}

    def gate_parameters(self) -> list[nn.Parameter]:
        """The thetas of every gate."""
        return [gate.theta for block in self.blocks().values() for gate in block.gates()]

    def weight_parameters(self) -> list[nn.Parameter]:
        """Every parameter except the thetas."""
        thetas = {id(theta) for theta in self.gate_parameters()}
        return [param for param in self.parameters() if id(param) not in thetas]

    def log_prob(self) -> th.Tensor:
        """Per-sample log-probability of the last aux pass' gate samples (REINFORCE estimator), over the branches
        that still have gates (pruning can empty a branch)."""
        return sum(block.log_prob() for block in self.blocks().values() if block.gates())

    def project_(self) -> None:
        """Project every theta onto [0, 1]; call after each optimizer step."""
        for block in self.blocks().values():
            block.project_()

    def expected_cost(self, pricing: Pricing = parameter_pricing) -> tuple[th.Tensor, th.Tensor, th.Tensor]:
        """``(cost of OFENet, E[width of phi_s], E[width of phi_sa])`` as polynomials in the thetas.

        The cost covers both branches and the aux head (each priced as its part, :data:`sb3_xinet.blocks.Part`;
        by default their parameters: every weight, bias and BatchNorm affine parameter); the
        expected widths let the networks that read ``phi_s`` / ``phi_sa`` add their own cost.
        """
        cost_state, width_s = self.state.expected_cost(th.as_tensor(float(self.obs_dim)), pricing(branch_role("state")))
        cost_state_action, width_sa = self.state_action.expected_cost(
            width_s + self.action_dim, pricing(branch_role("state_action"))
        )
        cost_head = pricing(HEAD)(width_sa, th.as_tensor(float(self.target_dim)), th.ones(()), 0)
        return cost_state + cost_state_action + cost_head, width_s, width_sa

    def register_consumer(self, feature: Branch, consumer: nn.Module) -> None:
        """Register a module that reads ``phi_s`` (``feature="state"``) or ``phi_sa`` (``"state_action"``).

        Its input columns are removed together with the units behind them. A consumer is an ``nn.Linear``
        (or anything with ``remove_input_columns``) whose input is that feature vector, e.g. the first layer
        of the actor, of each critic and of each target critic. OFENet keeps only a weak reference, so it does
        not own the consumer; copies and pickles of OFENet carry no consumers.
        """
        if feature not in BRANCHES:
            raise ValueError(f"Unknown OFENet feature {feature!r}, expected one of {BRANCHES}")
        width = self.state_features_dim if feature == "state" else self.state_action_features_dim
        in_features = consumer.in_features
        if in_features != width:
            raise ValueError(f"A consumer of {feature} features must read {width} inputs, it reads {in_features}")
        self._consumers[feature].append(ref(consumer))

    def consumers(self, feature: Branch) -> list[nn.Module]:
        """The live registered consumers of a feature."""
        alive = [consumer() for consumer in self._consumers[feature]]
        return [consumer for consumer in alive if consumer is not None]

    def remove_units(self, branch: Branch, layer_id: int, units: Sequence[int], optimizers: Optimizers = ()) -> None:
        """Remove units of one layer and the matching input columns of every consumer.

        State units feed the later state layers, every state-action layer, the aux head and every consumer of
        ``phi_s`` and ``phi_sa``; state-action units feed the later state-action layers, the head and the
        consumers of ``phi_sa``. The optimizers lose the same entries of their state.
        """
        if branch not in BRANCHES:
            raise ValueError(f"Unknown OFENet branch {branch!r}, expected one of {BRANCHES}")
        columns = self.blocks()[branch].remove_units(layer_id, units, optimizers)
        for reader in self._readers(branch):
            remove_input_columns(reader, columns, optimizers)

    def _readers(self, branch: Branch) -> list[nn.Module]:
        """Every module outside the branch that reads its output columns, at the same indices: for the state
        branch, the state-action branch and the consumers of ``phi_s``; for both, the aux head and the consumers of
        ``phi_sa`` (which starts with ``phi_s``)."""
        readers: list[nn.Module] = [self.state_action, *self.consumers("state")] if branch == "state" else []
        return [*readers, self.head, *self.consumers("state_action")]

    def fold_gates_(self, optimizers: Optimizers = ()) -> None:
        """Drop every gate, with each unit's theta moved into the columns that read it (in later layers, the aux
        head and every consumer): the mean-gated features, as every consumer sees them, are unchanged."""
        for branch, block in self.blocks().items():
            columns, factors = block.fold_gates_(optimizers)
            if columns:
                for reader in self._readers(branch):
                    scale_input_columns(reader, columns, factors, optimizers)

    def prune(self, threshold: float, optimizers: Optimizers = ()) -> dict[Branch, dict[int, list[int]]]:
        """Remove every unit whose theta is at or below ``threshold``; return what was removed.

        The returned indices are the units' positions within their layer before this call.
        """
        removed: dict[Branch, dict[int, list[int]]] = {}
        for branch, block in self.blocks().items():
            found = block.units_at_or_below(threshold)
            for layer_id, units in found.items():
                self.remove_units(branch, layer_id, units, optimizers)
            if found:
                removed[branch] = found
        return removed

    def __getstate__(self) -> dict[str, Any]:
        # weak references cannot be pickled, and a copy must not prune the original's consumers
        state = super().__getstate__()
        state["_consumers"] = {branch: [] for branch in BRANCHES}
        return state
