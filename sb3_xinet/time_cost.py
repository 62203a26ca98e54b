"""The time cost model: the expected time of one training step, written in the thetas.

The paper's regularizer charges parameters. What a user pays for is time, and on the machines XiNet algorithms run on
(CPUs, small GPUs) time is not parameters: a layer costs kernel launches, a BatchNorm, an activation and a
concatenation whatever its width, and the DenseNet layers of OFENet are each run in several passes of every
step. ``cost_model="time"`` charges each linear layer of the policy

    passes * (per_mac * E[in] * E[out] + per_unit * E[out] + per_layer * P(layer is there))

seconds, with ``passes`` the number of batch-sized passes (forward 1, backward through weights and inputs 2,
backward to the inputs only 1) that a training step runs through that part of the policy (:data:`PASSES`), and
adds the ``fixed`` time that no theta changes (replay sampling, losses, the entropy coefficient). Every term is
multilinear in the thetas (a layer's input width is the sum of the expected widths before it), so the expected
time ``T(theta)`` is exact for independent gates and its derivative is each unit's (and each layer's) time.

The per-layer term is what asks for depth: a DenseNet layer only saves it when all of it goes. Charged through
``1 - prod(1 - theta_i)`` over its units, its gradient would vanish while most units are on; so under this model
every OFENet layer carries a layer gate (:class:`~sb3_xinet.nets.GatedLayer`), a Bernoulli variable of its own
whose theta is charged the layer's whole time (its units' and its fixed part) and whose removal deletes the layer.

The four coefficients are measured, not guessed, when the model is built (:mod:`sb3_xinet.calibration`). They are
saved with the model and can be passed in (``time_calibration``), e.g. to reuse one calibration across seeds so
that runs are reproducible. The penalty divides ``T`` by its value for the unpruned network, so ``c`` keeps its
meaning (relative cost against relative loss), and a machine uniformly slower or faster than the one calibrated
on prices units the same.
The model describes the step after pruning has ended (plain OFENet-SAC at the pruned widths, no gates): the time
the user pays for most of a run.
"""

from dataclasses import asdict, dataclass, fields
from typing import Any

import torch as th

from sb3_xinet.blocks import ACTOR, CRITIC, HEAD, STATE, STATE_ACTION, Part
from sb3_xinet.common.checks import check_number
from sb3_xinet.cost import LayerPrice, Priced, Pricing

PASSES: dict[Part, int] = {
    # aux loss forward + backward (3), phi_s of observations and next observations (2)
    STATE: 5,
    # the same (5), plus phi_sa(s, pi(s)) for the actor loss: forward, backward to the action (2)
    STATE_ACTION: 7,
    # aux loss forward + backward
    HEAD: 3,
    # pi(s) forward + backward (3), pi(s') for the target (1)
    ACTOR: 4,
    # Q(s, a) forward + backward (3), its target copy on s' (1), Q(s, pi(s)) forward + backward to the action (2)
    CRITIC: 6,
}
COEFFICIENTS = ("per_mac", "per_unit", "per_layer", "fixed")


@dataclass(frozen=True)
class TimeCalibration:
    """Seconds per unit of work of one training step on one device, at one batch size.

    :param per_mac: per multiply-add of a linear layer, per pass
    :param per_unit: per unit of a layer, per pass (bias, BatchNorm, activation, gate, concatenation)
    :param per_layer: per layer, per pass (kernel launches and the like)
    :param fixed: per step, whatever the shapes
    :param batch_size: the batch size it was measured at
    :param device: the device it was measured on
    """

    per_mac: float
    per_unit: float
    per_layer: float
    fixed: float
    batch_size: int
    device: str

    def __post_init__(self) -> None:
        for name in COEFFICIENTS:
            check_number(f"time_calibration: {name}", getattr(self, name), minimum=0)
        if self.per_mac + self.per_unit + self.per_layer <= 0:
            raise ValueError("time_calibration: per_mac, per_unit and per_layer cannot all be 0 (nothing to prune for)")

    @classmethod
    def from_value(cls, value: "TimeCalibration | dict[str, Any]") -> "TimeCalibration":
        """From a calibration or its :meth:`to_dict`; a ValueError says what is missing or wrong."""
        if isinstance(value, TimeCalibration):
            return value
        if not isinstance(value, dict):
            raise ValueError(f"time_calibration must be a TimeCalibration or a dict, got {value!r}")
        names = {field.name for field in fields(cls)}
        if set(value) != names:
            raise ValueError(f"time_calibration needs exactly the keys {sorted(names)}, got {sorted(value)}")
        return cls(**value)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def pricing(self) -> Pricing:
        """The price of every part of the policy, in seconds per training step."""

        def price_of(part: Part) -> LayerPrice:
            passes = PASSES[part]

            def price(n_in: th.Tensor, n_out: th.Tensor, present: th.Tensor, extra: int) -> th.Tensor:
                return passes * (self.per_mac * n_in * n_out + self.per_unit * n_out + self.per_layer * present)

            return price

        return price_of

    def expected_time(self, policy: Priced) -> th.Tensor:
        """``T(theta)``: the expected seconds of one training step of ``policy``."""
        return policy.expected_cost(self.pricing()) + self.fixed
