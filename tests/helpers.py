"""What the tests share: tiny XiNet models that prune within a few hundred steps (:func:`make_model`), an env of
any spaces (:class:`SpacesEnv`), and a small OFENet + downstream-consumer system for the removal, cost and
surgery tests (:class:`System`)."""

import copy
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import torch as th
from torch import nn

from sb3_xinet import XiNetSAC, XiNetTQC
from sb3_xinet.common.algorithm import XiNetAlgorithm
from sb3_xinet.common.presets import SHORT_PRUNING
from sb3_xinet.nets import GatedMLP, remove_input_columns
from sb3_xinet.ofenet import OFENet

# Small networks and fast thetas so that a few hundred steps prune a clear share of the units
PRUNING = {**SHORT_PRUNING, "device": "cpu"}
STEPS = 600
# SB3's way of running a test over algorithms: the tests that take the ``model_class`` fixture run once per algorithm
MODEL_LIST = [XiNetSAC, XiNetTQC]


def make_model(env="Pendulum-v1", model_class: type[XiNetAlgorithm] = XiNetSAC, **overrides) -> XiNetAlgorithm:
    return model_class("MlpPolicy", env, **{**PRUNING, **overrides})


class SpacesEnv(gym.Env):
    """Random observations of any space; the reward asks for actions near zero."""

    def __init__(self, observation_space: gym.Space, action_space: gym.Space) -> None:
        self.observation_space, self.action_space = observation_space, action_space
        self.steps = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.observation_space.seed(seed)
        self.steps = 0
        return self.observation_space.sample(), {}

    def step(self, action):
        self.steps += 1
        reward = -float(np.square(action).sum())
        return self.observation_space.sample(), reward, False, self.steps >= 20, {}


def observations(n: int = 16) -> np.ndarray:
    return np.random.default_rng(1).uniform(-1, 1, size=(n, 3)).astype(np.float32)


def units(model: XiNetAlgorithm) -> dict[tuple[str, int], int]:
    summary = model.pruning_summary()
    return {(layer.block, layer.layer): layer.units for network in summary.networks for layer in network.layers}


def assert_targets_match(model: XiNetAlgorithm) -> None:
    critic, target = model.policy.critic.state_dict(), model.policy.critic_target.state_dict()
    assert critic.keys() == target.keys()
    for name, value in critic.items():
        assert value.shape == target[name].shape, name


@dataclass
class System:
    """OFENet, an actor-like gated MLP + head reading phi_s, and a critic-like Linear reading phi_sa."""

    ofenet: OFENet
    actor: GatedMLP
    actor_head: nn.Linear
    critic: nn.Linear

    @classmethod
    def build(cls, obs_dim, action_dim, state_units, state_action_units, actor_units, seed=0) -> "System":
        th.manual_seed(seed)
        ofenet = OFENet(obs_dim, action_dim, state_units, state_action_units)
        actor = GatedMLP(ofenet.state_features_dim, actor_units)
        system = cls(ofenet, actor, nn.Linear(actor.out_features, action_dim), nn.Linear(ofenet.state_action_features_dim, 1))
        system.register()
        return system

    def register(self) -> None:
        self.ofenet.register_consumer("state", self.actor)
        self.ofenet.register_consumer("state_action", self.critic)

    def clone(self) -> "System":
        """A deep copy with its own consumer registrations (copies of OFENet carry none)."""
        twin = copy.deepcopy(self)
        twin.register()
        return twin

    def modules(self) -> list[nn.Module]:
        return [self.ofenet, self.actor, self.actor_head, self.critic]

    def blocks(self) -> dict:
        return {"state": self.ofenet.state, "state_action": self.ofenet.state_action, "actor": self.actor}

    def outputs(self, obs, actions, stochastic=False, batch_stats=False) -> list[th.Tensor]:
        """Aux prediction, action head output and critic output, all in the same mode."""
        z_s = self.ofenet.phi_s(obs, stochastic, batch_stats)
        z_sa = self.ofenet.phi_sa(obs, actions, stochastic, batch_stats)
        return [self.ofenet.head(z_sa), self.actor_head(self.actor(z_s, stochastic, batch_stats)), self.critic(z_sa)]

    def expected_params(self) -> th.Tensor:
        p_ofenet, width_s, width_sa = self.ofenet.expected_cost()
        p_actor, width_actor = self.actor.expected_cost(width_s)
        p_head = (width_actor + 1) * self.actor_head.out_features
        return p_ofenet + p_actor + p_head + (width_sa + 1) * self.critic.out_features

    def thetas(self) -> list[nn.Parameter]:
        return [gate.theta for block in self.blocks().values() for gate in block.gates()]

    def remove(self, removal: dict, optimizers=()) -> None:
        """Remove ``{block: {layer_id: units}}``: OFENet branches through OFENet, actor units via its head."""
        for branch in ("state", "state_action"):
            for layer_id, units in removal.get(branch, {}).items():
                self.ofenet.remove_units(branch, layer_id, units, optimizers)
        for layer_id, units in removal.get("actor", {}).items():
            columns = self.actor.remove_units(layer_id, units, optimizers)
            if columns:
                remove_input_columns(self.actor_head, columns, optimizers)

    def gate_off(self, removal: dict) -> None:
        """Force xi = 0 for the units of ``removal`` by setting their theta to 0."""
        with th.no_grad():
            for name, per_layer in removal.items():
                block = self.blocks()[name]
                for layer_id, units in per_layer.items():
                    block.layers[block.layer_ids.index(layer_id)].gate.theta[units] = 0.0
