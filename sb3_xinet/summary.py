"""``XiNetSAC.pruning_summary()``: what is left of each network and layer, as data and as a table."""

from dataclasses import dataclass

from sb3_xinet.blocks import OFENET_ROLES, BlockEntry, short_name
from sb3_xinet.cost import count_parameters
from sb3_xinet.policies import XiNetPolicy


@dataclass(frozen=True)
class LayerSummary:
    """One hidden layer of a gated block; ``units`` is 0 for a DenseNet layer that was removed."""

    block: str
    layer: int
    units: int
    initial_units: int


@dataclass(frozen=True)
class NetworkSummary:
    """One network (``ofenet``, ``actor``, ``critic<i>``): parameters as :func:`count_parameters` counts them."""

    name: str
    params: int
    initial_params: int
    layers: tuple[LayerSummary, ...]

    @property
    def units(self) -> int:
        return sum(layer.units for layer in self.layers)

    @property
    def initial_units(self) -> int:
        return sum(layer.initial_units for layer in self.layers)

    def layers_alive(self) -> dict[str, tuple[int, int]]:
        """Per block, ``(layers with units left, layers at the start)``: OFENet's layers can go whole."""
        alive: dict[str, tuple[int, int]] = {}
        for layer in self.layers:
            left, initial = alive.get(layer.block, (0, 0))
            alive[layer.block] = (left + (layer.units > 0), initial + 1)
        return alive


@dataclass(frozen=True)
class PruningSummary:
    """Per-network, per-layer units alive and parameters, now and at the start.

    Totals cover OFENet, the actor and the critics; the target critics, copies of the critics with the same
    shapes, are not counted (nor are the thetas, bookkeeping that pruning removes with the units).
    """

    num_timesteps: int
    networks: tuple[NetworkSummary, ...]

    @classmethod
    def from_policy(
        cls, policy: XiNetPolicy, initial_units: dict[str, list[int]], initial_params: dict[str, int], num_timesteps: int
    ) -> "PruningSummary":
        """The summary of ``policy`` against its unpruned widths (per block) and parameter counts (per network)."""
        networks = []
        for name, net in policy.networks().items():
            layers = []
            for entry in policy.registry():
                if entry.network != name:
                    continue
                alive = dict(zip(entry.block.layer_ids, entry.block.units, strict=True))
                for layer_id, initial in enumerate(initial_units[entry.name]):
                    layers.append(LayerSummary(entry.name, layer_id, alive.get(layer_id, 0), initial))
            networks.append(NetworkSummary(name, count_parameters([net]), initial_params[name], tuple(layers)))
        return cls(num_timesteps, tuple(networks))

    def __getitem__(self, name: str) -> NetworkSummary:
        for network in self.networks:
            if network.name == name:
                return network
        raise KeyError(f"No network {name!r}; networks: {[network.name for network in self.networks]}")

    @property
    def params(self) -> int:
        return sum(network.params for network in self.networks)

    @property
    def initial_params(self) -> int:
        return sum(network.initial_params for network in self.networks)

    @property
    def params_fraction(self) -> float:
        return self.params / self.initial_params

    @property
    def units(self) -> int:
        return sum(network.units for network in self.networks)

    @property
    def initial_units(self) -> int:
        return sum(network.initial_units for network in self.networks)

    def to_dict(self) -> dict:
        """Plain data (e.g. for JSON): totals, and per network its parameters and per-layer units."""
        return {
            "num_timesteps": self.num_timesteps,
            "params": self.params,
            "initial_params": self.initial_params,
            "networks": {
                network.name: {
                    "params": network.params,
                    "initial_params": network.initial_params,
                    "units": {f"{layer.block}/{layer.layer}": [layer.units, layer.initial_units] for layer in network.layers},
                    "layers": {block: list(counts) for block, counts in network.layers_alive().items()},
                }
                for network in self.networks
            },
        }

    def __str__(self) -> str:
        lines = [
            f"Pruning summary at step {self.num_timesteps:,}",
            f"{'network':<10} {'parameters':>22}  units alive per layer",
        ]
        for network in self.networks:
            params = f"{network.params:,} / {network.initial_params:,}"
            blocks: dict[str, list[str]] = {}
            for layer in network.layers:
                blocks.setdefault(layer.block, []).append(f"{layer.units}/{layer.initial_units}")
            layers = network.layers_alive()
            per_layer = "; ".join(
                f"{short_name(block)}: {' '.join(units)}"
                + (f" ({layers[block][0]}/{layers[block][1]} layers)" if BlockEntry.role_of(block) in OFENET_ROLES else "")
                for block, units in blocks.items()
            )
            lines.append(f"{network.name:<10} {params:>22}  {per_layer}")
        lines.append(
            f"{'total':<10} {f'{self.params:,} / {self.initial_params:,}':>22}  "
            f"{self.params_fraction:.1%} of the parameters, {self.units}/{self.initial_units} units"
        )
        return "\n".join(lines)
