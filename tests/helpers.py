"""A small OFENet + downstream-consumer system shared by the removal, cost and surgery tests."""

import copy
from dataclasses import dataclass

import torch as th
from torch import nn

from sb3_xinet.nets import GatedMLP, remove_input_columns
from sb3_xinet.ofenet import OFENet


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
