"""The registry of a policy's gated blocks: what each one is, which network it belongs to, which loss pays for it.

Summaries, logs, loss scales and benchmark tables all key blocks by name (``ofenet.state``, ``actor``,
``critic0`` ...). The names are made here from a block's role and index, and read back here
(:meth:`BlockEntry.role_of`), so no other module builds or parses them.
"""

from dataclasses import dataclass
from typing import Literal

from torch import nn

from sb3_xinet.nets import GatedBlock

Role = Literal["ofenet.state", "ofenet.state_action", "actor", "critic"]
OFENET_ROLES: tuple[Role, ...] = ("ofenet.state", "ofenet.state_action")
ROLES: tuple[Role, ...] = (*OFENET_ROLES, "actor", "critic")


@dataclass(frozen=True)
class BlockEntry:
    """One gated block of a policy.

    :param role: what the block is: one of OFENet's two DenseNet branches, the actor's or a critic's hidden layers
    :param block: the block itself
    :param index: the critic's index (None for the other roles)
    :param owner: the module that removes the block's units together with their readers (OFENet for its
        branches, the actor, the critic's Q-network)
    :param target: the owner's target copy, which loses the same units (a critic's target Q-network), or None
    """

    role: Role
    block: GatedBlock
    index: int | None = None
    owner: nn.Module | None = None
    target: nn.Module | None = None

    @property
    def name(self) -> str:
        """The block's key: its role, and the critic's index (``critic0``)."""
        return self.role if self.index is None else f"{self.role}{self.index}"

    @property
    def network(self) -> str:
        """The network it belongs to, as the summary counts parameters: ``ofenet``, ``actor``, ``critic0``."""
        return "ofenet" if self.role in OFENET_ROLES else self.name

    @property
    def loss(self) -> str:
        """The loss its thetas' cost is weighed against (its loss scale's key): OFENet's aux loss, the actor's
        loss, or the critic's own loss."""
        return "aux" if self.role in OFENET_ROLES else self.name

    @property
    def whole_layers(self) -> bool:
        """Whether a layer of it can be removed whole (a DenseNet layer: its input passes through)."""
        return self.role in OFENET_ROLES

    @staticmethod
    def role_of(name: str) -> Role:
        """The role of a block known only by its name (as in a table of units per block)."""
        for role in ROLES:
            if name == role or (role == "critic" and name[len(role) :].isdigit() and name.startswith(role)):
                return role
        raise ValueError(f"{name!r} is not a block name: expected one of {ROLES[:-1]} or critic<i>")
