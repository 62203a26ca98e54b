"""The names of a policy's parts, and the registry of its gated blocks: what each block is, which network it
belongs to, which loss pays for it.

Summaries, logs, loss scales, the time model's prices and benchmark tables all key the parts of a policy by name
(``ofenet.state``, ``ofenet.head``, ``actor``, ``critic0`` ...). The names are made here, from a part's role and
index, and read back here (:meth:`BlockEntry.role_of`, :func:`short_name`); no other module builds or parses them.
"""

from dataclasses import dataclass
from typing import Literal

from torch import nn

from sb3_xinet.nets import GatedBlock

Role = Literal["ofenet.state", "ofenet.state_action", "actor", "critic"]
Part = Literal["ofenet.state", "ofenet.state_action", "ofenet.head", "actor", "critic"]
OFENET = "ofenet"
STATE: Role = "ofenet.state"
STATE_ACTION: Role = "ofenet.state_action"
HEAD: Part = "ofenet.head"  # OFENet's aux head: priced, but not gated
ACTOR: Role = "actor"
CRITIC: Role = "critic"
OFENET_ROLES: tuple[Role, ...] = (STATE, STATE_ACTION)
ROLES: tuple[Role, ...] = (*OFENET_ROLES, ACTOR, CRITIC)
AUX_LOSS = "aux"  # the loss OFENet's thetas pay with


def branch_role(branch: Literal["state", "state_action"]) -> Role:
    """The role of one of OFENet's branches (``ofenet.state`` for its ``state`` branch)."""
    return STATE if branch == "state" else STATE_ACTION


def critic_name(index: int) -> str:
    """The name of critic ``index`` (``critic0``): its block, its network and its loss."""
    return f"{CRITIC}{index}"


def short_name(name: str) -> str:
    """A block's name without its network (``state`` for ``ofenet.state``), for tables."""
    return name.removeprefix(f"{OFENET}.")


@dataclass(frozen=True)
class BlockEntry:
    """One gated block of a policy.

    :param role: what the block is: one of OFENet's two DenseNet branches, the actor's or a critic's hidden layers
    :param block: the block itself
    :param index: the critic's index (None for the other roles)
    :param owner: the module that removes a head's units together with their readers (the actor, the critic's
        Q-network); None for OFENet's branches, whose units OFENet removes with every reader of its features
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
        return self.role if self.index is None else critic_name(self.index)

    @property
    def network(self) -> str:
        """The network it belongs to, as the summary counts parameters: ``ofenet``, ``actor``, ``critic0``."""
        return OFENET if self.role in OFENET_ROLES else self.name

    @property
    def loss(self) -> str:
        """The loss its thetas' cost is weighed against (its loss scale's key): OFENet's aux loss, the actor's
        loss, or the critic's own loss."""
        return AUX_LOSS if self.role in OFENET_ROLES else self.name

    @property
    def whole_layers(self) -> bool:
        """Whether a layer of it can be removed whole (a DenseNet layer: its input passes through)."""
        return self.role in OFENET_ROLES

    @staticmethod
    def role_of(name: str) -> Role:
        """The role of a block known only by its name (as in a table of units per block)."""
        for role in ROLES:
            if name == role or (role == CRITIC and name[len(role) :].isdigit() and name.startswith(role)):
                return role
        raise ValueError(f"{name!r} is not a block name: expected one of {ROLES[:-1]} or critic<i>")
