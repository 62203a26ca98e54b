"""The cost-aware regularizer: one knob ``c``, a cost model, and the cost gradient every theta gets.

Every theta pays, on top of its task loss's gradient, the gradient of the penalty

    c * L_ref * C(theta) / C0

with ``C(theta)`` the expected cost of the gated networks (their parameter count ``P``, :mod:`sb3_xinet.cost`, or
the time of a training step ``T``, :mod:`sb3_xinet.time_cost`), ``C0`` its value for the unpruned networks and
``L_ref`` the loss that the units paying with the theta's loss hold (OFENet's aux loss, the actor's, or its own
critic's: :attr:`~sb3_xinet.blocks.BlockEntry.loss`). ``dC/dtheta_j`` is what unit j costs given the others, so
the many per-layer regularization weights ``mu_j = c * dC/dtheta_j`` are all set by ``c``, and they follow the
networks as they shrink. A unit is worth keeping when removing it would raise its loss by more than ``c`` times
its share of the cost, relative to what its network's units hold: ``dL / L_ref > c * dC / C0``.

The loss the units hold is measured as the rise of the loss when each of them is dropped with probability 0.1
(mean gates otherwise): the loss a tenth of them hold (``held_loss`` in :mod:`sb3_xinet.common.training`). The
tenth is the unit of ``c``: with it ``c = 1`` prunes SAC's networks about as the loss level did (docs/design.md). It
leaves out the part of a loss that no unit can lower (the spread of a target no network predicts, the spread of a
quantile critic's return distribution), which a scale at the loss's level would make every unit pay for; and it is
in the currency of the task gradient (a theta's expected gradient under sampled gates is the loss its unit holds),
so one ``c`` means the same for SAC's squared error, TQC's quantile loss, the actor's value and OFENet's aux loss,
and rescaling a loss (another environment's units) leaves the decisions unchanged (docs/design.md).

``L_ref`` is not taken from the current batch alone: :class:`~sb3_xinet.cost.LossScale` averages it over
``loss_scale_window`` gradient steps, measured with every unit on before pruning starts, then followed slowly:
SAC's losses grow with the returns over a run.
"""

from collections.abc import Callable
from typing import Any, Protocol

import torch as th

from sb3_xinet.blocks import BlockEntry
from sb3_xinet.common.checks import check_int, check_number
from sb3_xinet.cost import LossScale, Pricing, parameter_pricing
from sb3_xinet.time_cost import TimeCalibration

COST_MODELS = ("params", "time")
COST_REFRESH = 10  # gradient steps between two computations of dC/dtheta
# gradient steps between two measurements of the loss scales: their averages span thousands of steps, and a
# measurement costs two deterministic passes of every network on a slice of the batch
SCALE_EVERY = 4
CostGrads = dict[str, list[tuple[th.Tensor, th.Tensor]]]


class GatedPolicy(Protocol):
    """What the regularizer reads of a policy: its gated blocks and its cost under a pricing."""

    def registry(self) -> tuple[BlockEntry, ...]: ...

    def expected_cost(self, pricing: Pricing = parameter_pricing) -> th.Tensor: ...


def check_cost_weight(cost_weight: object) -> float:
    """Validate the user-facing cost weight ``c``: a finite, non-negative number."""
    return check_number("cost_weight", cost_weight, minimum=0)


def penalty_weight(cost_weight: float, loss_scale: float, initial_cost: float) -> float:
    """``c * |L_ref| / C0``: the weight of ``C(theta)`` in the penalty of the thetas that pay with that loss."""
    return cost_weight * abs(loss_scale) / initial_cost


class Regularizer:
    """The cost-aware regularizer of an XiNet algorithm (see the module's docstring): its settings, ``C0``, the
    loss scales, and the cost gradients of the thetas. Saved with the model.

    :param cost_weight: ``c``, the one regularization knob; 0 turns the regularizer and pruning off
    :param cost_model: what a unit costs: ``"params"``, the parameters it keeps alive (the paper's), or
        ``"time"``, its share of a training step's time on this device (:mod:`sb3_xinet.time_cost`)
    :param time_calibration: the time model's coefficients (a :class:`TimeCalibration` or its ``to_dict()``);
        None measures them in :meth:`setup`
    :param loss_scale_window: time constant, in gradient steps, of the loss scales ``L_ref``
    """

    def __init__(
        self,
        cost_weight: float = 1.0,
        cost_model: str = "params",
        time_calibration: TimeCalibration | dict[str, Any] | None = None,
        loss_scale_window: int = 10_000,
    ) -> None:
        if cost_model not in COST_MODELS:
            raise ValueError(f"cost_model must be one of {COST_MODELS}, got {cost_model!r}")
        self.cost_weight = check_cost_weight(cost_weight)
        self.cost_model = cost_model
        self.time_calibration = None if time_calibration is None else TimeCalibration.from_value(time_calibration)
        self.loss_scale_window = check_int("loss_scale_window", loss_scale_window, 1)
        self.initial_cost = 0.0  # C0
        self.loss_scales: dict[str, LossScale] = {}
        self.active = False  # switched on and off by the pruning schedule
        self._reset_transient()

    def _reset_transient(self) -> None:
        """The state of one run that is not saved: tensors of the current networks."""
        self._cache: tuple[int, CostGrads] | None = None
        self.cost_term: th.Tensor | None = None  # c * C / C0 at the last computation, logged as xinet/cost_term
        self._pending_scales: list[th.Tensor] = []

    def __getstate__(self) -> dict[str, Any]:
        return {key: value for key, value in self.__dict__.items() if key not in ("_cache", "cost_term", "_pending_scales")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._reset_transient()

    @property
    def enabled(self) -> bool:
        """Whether there is a regularizer at all (``c > 0``): without one, nothing is pruned."""
        return self.cost_weight > 0

    def switch(self, on: bool) -> None:
        """Turn the cost gradients on or off (the schedule's call); always off when not :attr:`enabled`."""
        self.active = on and self.enabled

    def setup(self, policy: GatedPolicy, calibrate: Callable[[], TimeCalibration]) -> None:
        """Measure ``C0`` on the unpruned ``policy`` (calling ``calibrate`` first for a time cost without a
        calibration)."""
        if self.cost_model == "time" and self.enabled and self.time_calibration is None:
            self.time_calibration = calibrate()
        if self.cost_model == "params" or self.enabled:
            self.initial_cost = float(self.expected_cost(policy).item())

    def track(self, losses: list[str]) -> None:
        """Keep one loss scale per loss that thetas pay with (a save from an older version measures its missing
        ones afresh)."""
        window = max(1, self.loss_scale_window // SCALE_EVERY)  # in measurements
        self.loss_scales = {name: self.loss_scales.get(name, LossScale(window)) for name in losses}

    def expected_cost(self, policy: GatedPolicy) -> th.Tensor:
        """``C(theta)`` of ``policy``, as a polynomial in the thetas: ``P(theta)``, or ``T(theta)`` in seconds."""
        if self.cost_model == "time":
            assert self.time_calibration is not None
            return self.time_calibration.expected_time(policy)
        return policy.expected_cost(parameter_pricing)

    def gradients(self, policy: GatedPolicy) -> CostGrads | None:
        """``(theta, dC/dtheta)`` of every gate, grouped by the loss its block pays with, or None while the
        regularizer is off.

        Recomputed every ``COST_REFRESH`` gradient steps and after every change of shapes (:meth:`forget`): a
        theta moves by at most its learning rate per step, so ``dC/dtheta`` (sums of other units' thetas) barely
        changes in between, and its autograd pass is a few percent of a training step.
        """
        if not self.active:
            return None
        if self._cache is not None and self._cache[0] < COST_REFRESH:
            self._cache = (self._cache[0] + 1, self._cache[1])
            return self._cache[1]
        registry = policy.registry()
        thetas = [gate.theta for entry in registry for gate in entry.block.gates()]
        if not thetas:
            return None
        expected = self.expected_cost(policy)
        grads = dict(zip(thetas, th.autograd.grad(expected, thetas), strict=True))
        self.cost_term = self.cost_weight * expected.detach() / self.initial_cost
        cost_grads: CostGrads = {}
        for entry in registry:
            cost_grads.setdefault(entry.loss, []).extend((gate.theta, grads[gate.theta]) for gate in entry.block.gates())
        self._cache = (1, cost_grads)
        return cost_grads

    def add_gradients(self, cost_grads: CostGrads | None, loss: str) -> None:
        """Add ``c * L_ref / C0 * dC/dtheta`` to the gradients of the thetas that pay with ``loss``."""
        if cost_grads is None:
            return
        factor = penalty_weight(self.cost_weight, self.loss_scales[loss].value, self.initial_cost)
        for theta, grad in cost_grads.get(loss, []):
            if theta.grad is None:
                theta.grad = factor * grad
            else:
                theta.grad.add_(grad, alpha=factor)

    def forget(self) -> None:
        """The networks changed shape (a removal) or lost their gates (the fold): no cached gradient holds."""
        self._cache = None

    def stop(self) -> None:
        """Pruning ended: off for good, nothing cached."""
        self.active = False
        self._cache = self.cost_term = None

    def record_scales(self, values: th.Tensor) -> None:
        """One gradient step's loss values, in the order of :meth:`apply_scales`'s names (kept on the device)."""
        self._pending_scales.append(values)

    def apply_scales(self, names: list[str]) -> None:
        """Update the loss scales with the recorded values, step by step (one host synchronisation)."""
        if self._pending_scales:
            for row in th.stack(self._pending_scales).tolist():
                for name, value in zip(names, row, strict=True):
                    self.loss_scales[name].update(value)
        self._pending_scales = []
