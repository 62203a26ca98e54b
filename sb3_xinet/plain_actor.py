"""The deterministic actor of a saved model as plain torch modules: what every export format is written from.

``DeterministicActor`` maps a batch of float32 observations to the actions ``model.predict(obs,
deterministic=True)`` returns (squashed by tanh and rescaled to the action space's bounds). Observations and
actions are flat vectors: for spaces other than a 1-D Box, the observation as SB3 preprocesses it (flattened,
one-hot for Discrete / MultiDiscrete) and the action before its reshape to the action space's shape. Each
BatchNorm (running statistics) is folded into the linear layer before it, and a gate scales its unit by theta (the
deterministic rule), a product left out where every theta is 1. SB3's own SAC and sb3-contrib's TQC have the same
actor without OFENet (:func:`sb3_actor`), so they export the same way.
"""

from pathlib import Path
from typing import Any

import torch as th
from sb3_contrib import TQC
from stable_baselines3 import SAC
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.save_util import load_from_zip_file
from torch import nn

from sb3_xinet.common.algorithm import XiNetAlgorithm
from sb3_xinet.nets import GatedLayer
from sb3_xinet.ofenet import observation_dim
from sb3_xinet.xinet_sac import XiNetSAC
from sb3_xinet.xinet_tqc import XiNetTQC


class ExportedLayer(nn.Module):
    """``act(linear(x))``, times a per-unit scale when the unit's theta is not 1."""

    def __init__(self, linear: nn.Linear, activation: nn.Module, scale: th.Tensor) -> None:
        super().__init__()
        self.linear = linear
        self.activation = activation
        self.scaled = bool((scale != 1).any())
        self.register_buffer("scale", scale.clone())

    def forward(self, x: th.Tensor) -> th.Tensor:
        h = self.activation(self.linear(x))
        if self.scaled:
            h = h * self.scale
        return h


class DeterministicActor(nn.Module):
    """OFENet's state branch (DenseNet: each layer's output concatenated to its input), the actor's hidden
    layers, the mean head (clipped to ``[-clip_mean, clip_mean]`` with gSDE, as the actor does), tanh, and the
    rescaling to ``[low, high]``."""

    def __init__(
        self,
        dense: list[ExportedLayer],
        hidden: list[ExportedLayer],
        mu: nn.Linear,
        low: th.Tensor,
        high: th.Tensor,
        clip_mean: float = 0.0,
    ) -> None:
        super().__init__()
        self.dense = nn.ModuleList(dense)
        self.hidden = nn.ModuleList(hidden)
        self.mu = mu
        self.clip_mean = clip_mean
        self.register_buffer("low", low)
        self.register_buffer("high", high)

    def forward(self, obs: th.Tensor) -> th.Tensor:
        x = obs
        for layer in self.dense:
            x = th.cat([x, layer(x)], dim=1)
        for layer in self.hidden:
            x = layer(x)
        mean = self.mu(x)
        if self.clip_mean > 0:
            mean = th.clamp(mean, -self.clip_mean, self.clip_mean)
        action = th.tanh(mean)
        return self.low + 0.5 * (action + 1.0) * (self.high - self.low)


def export_layer(layer: GatedLayer) -> ExportedLayer:
    """A plain copy of a gated layer in inference mode: BN folded into the linear layer, theta (times the layer
    gate's) as a scale."""
    weight, bias = layer.linear.weight.detach().clone(), layer.linear.bias.detach().clone()
    if layer.bn is not None:
        bn = layer.bn
        factor = bn.weight.detach() / th.sqrt(bn.running_var + bn.eps)
        weight = weight * factor[:, None]
        bias = (bias - bn.running_mean) * factor + bn.bias.detach()
    linear = nn.Linear(weight.shape[1], weight.shape[0])
    linear.weight.data.copy_(weight)
    linear.bias.data.copy_(bias)
    scale = layer.mean_scale()
    scale = th.ones(weight.shape[0]) if scale is None else scale
    return ExportedLayer(linear, type(layer.activation)(), scale)


def copy_linear(linear: nn.Linear) -> nn.Linear:
    """A CPU copy of a linear layer (the export never shares the model's tensors)."""
    copy = nn.Linear(linear.in_features, linear.out_features)
    copy.load_state_dict({key: value.detach().cpu() for key, value in linear.state_dict().items()})
    return copy


def bounds(model: BaseAlgorithm) -> tuple[th.Tensor, th.Tensor]:
    """The action space's flat float32 bounds."""
    space = model.action_space
    return th.as_tensor(space.low, dtype=th.float32).flatten(), th.as_tensor(space.high, dtype=th.float32).flatten()


def deterministic_actor(model: XiNetAlgorithm) -> DeterministicActor:
    """The plain-torch deterministic actor of a XiNetSAC or XiNetTQC model, on the CPU, in eval mode."""
    policy = model.policy
    actor = DeterministicActor(
        [export_layer(layer) for layer in policy.ofenet.state.layers],
        [export_layer(layer) for layer in policy.actor.latent_pi.layers],
        copy_linear(policy.actor.mu),
        *bounds(model),
        policy.actor.clip_mean if policy.actor.use_sde else 0.0,
    )
    return actor.cpu().eval()


def sb3_actor(model: BaseAlgorithm) -> DeterministicActor:
    """SB3 SAC's (or sb3-contrib TQC's, the same) deterministic actor as the same plain-torch module, without
    OFENet layers: its hidden layers with their activation, the mean head, tanh and the rescaling."""
    actor = model.actor
    modules = list(actor.latent_pi)
    layers = [
        ExportedLayer(copy_linear(module), type(modules[index + 1])(), th.ones(module.out_features))
        for index, module in enumerate(modules)
        if isinstance(module, nn.Linear)
    ]
    clip_mean = actor.clip_mean if actor.use_sde else 0.0
    return DeterministicActor([], layers, copy_linear(actor.mu), *bounds(model), clip_mean).cpu().eval()


def actor_of(model: BaseAlgorithm) -> DeterministicActor:
    """The plain-torch deterministic actor of any model this package exports (see :func:`load_model`)."""
    return deterministic_actor(model) if isinstance(model, XiNetAlgorithm) else sb3_actor(model)


def load_model(path: str | Path, device: str = "cpu", **kwargs: Any) -> BaseAlgorithm:
    """Load a XiNetSAC, XiNetTQC, SB3 SAC or sb3-contrib TQC save, whichever it is (told apart by its policy
    class); a ValueError for any other. ``kwargs`` go to ``load`` (``buffer_size=1`` for a model that will only
    act)."""
    data, _, _ = load_from_zip_file(path, device="cpu", load_data=True)
    policy_class = (data or {}).get("policy_class")
    module = getattr(policy_class, "__module__", "")
    if module.startswith("sb3_xinet"):
        cls = XiNetTQC if getattr(policy_class, "quantile_critics", False) else XiNetSAC
    elif module.startswith("stable_baselines3.sac"):
        cls = SAC
    elif module.startswith("sb3_contrib.tqc"):
        cls = TQC
    else:
        raise ValueError(f"{path} is not a XiNetSAC, XiNetTQC, SAC or TQC save (its policy class: {policy_class!r})")
    return cls.load(path, device=device, **kwargs)


def input_dim(model: BaseAlgorithm) -> int:
    """The length of the flat observation the exported actor reads."""
    return observation_dim(model.observation_space)
