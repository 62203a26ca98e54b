"""The cost-aware regularizer: one knob ``c``, a cost model, and the cost gradient every theta gets.

Every theta pays, on top of its task loss's gradient, the gradient of the penalty

    c * L_ref * C(theta) / C0

with ``C(theta)`` the expected cost of the gated networks (their parameter count ``P``, :mod:`sb3_xinet.cost`, or
the time of a training step ``T``, :mod:`sb3_xinet.time_cost`), ``C0`` its value for the unpruned networks and
``L_ref`` the scale of the loss that the theta's network pays with (OFENet's aux loss, the actor's, or its own
critic's: :attr:`~sb3_xinet.blocks.BlockEntry.loss`). ``dC/dtheta_j`` is what unit j costs given the others, so
the many per-layer regularization weights ``mu_j = c * dC/dtheta_j`` are all set by ``c``, and they follow the
networks as they shrink.

``L_ref`` is measured in the currency the decision is made in, the task gradient of the thetas: it is
``GRADIENT_UNIT`` times the sum, over the network's unit thetas, of the root mean square of their task gradient
(the gradient of the loss alone, read before the cost gradient is added; ``N * RMS`` over the network's ``N`` unit
thetas). Layer gates (the time cost model's) are priced with it but not part of it: a layer gate's gradient is the
sum of its units', so it would count the layer's units again, many times over.
A theta drifts to 0 when its expected task gradient does not outweigh its cost gradient, so a unit is kept when
``-E[dL/dtheta_j] / RMS > c * GRADIENT_UNIT * N * (dC/dtheta_j) / C0``: its pull, relative to the gradients its
network's thetas see, beats its share of the cost. A loss's units, its type (SAC's squared error, TQC's quantile
loss, the actor's value, OFENet's aux loss) and a floor no unit can lower (the spread of a target no network
predicts, the spread of a quantile critic's return distribution) scale the task gradient and ``L_ref`` alike, so
one ``c`` means the same for every loss and every environment (docs/design.md). With the REINFORCE estimator the
task gradient carries the estimator's own noise, so the same ``c`` prunes harder there.

``L_ref`` is a running mean over ``loss_scale_window`` gradient steps (:class:`~sb3_xinet.cost.LossScale`, of the
mean squared task gradient), measured only while the regularizer is on: the warm-up's early gradients never
enter it, and a scale that follows the current batch would feed back on the losses the sampled gates cause. The
running mean is updated from the values recorded since the last update (:meth:`Regularizer.apply_scales`, once
per ``train()`` call on a CPU): the cost gradients of the first steps of pruning, before any value is in, are 0.
"""

import math
from collections.abc import Callable
from typing import Any, NamedTuple, Protocol

import torch as th

from sb3_xinet.blocks import BlockEntry
from sb3_xinet.common.checks import check_int, check_number
from sb3_xinet.cost import LossScale, Pricing, parameter_pricing
from sb3_xinet.time_cost import TimeCalibration

COST_MODELS = ("params", "time")
COST_REFRESH = 10  # gradient steps between two computations of dC/dtheta
# The unit of c: L_ref is this share of the summed RMS task gradient. With it, c = 1 leaves XiNetSAC on Hopper-v5 with
# about a quarter of its parameters after 80,000 steps of pruning (the loss-level scale before it left 34%, the
# paper reports at most 30%); 0.25 left 11% (docs/design.md, "The unit").
GRADIENT_UNIT = 0.1


class GateGrad(NamedTuple):
    """A gate's theta, its cost gradient ``dC/dtheta``, and whether it is a unit gate (not a layer gate)."""

    theta: th.Tensor
    cost_grad: th.Tensor
    unit: bool


CostGrads = dict[str, list[GateGrad]]


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


def gradient_scale(mean_square: float, n_thetas: int) -> float:
    """``L_ref`` of a network whose ``n_thetas`` thetas see task gradients of mean square ``mean_square``."""
    return GRADIENT_UNIT * n_thetas * math.sqrt(mean_square)


class Regularizer:
    """The cost-aware regularizer of an XiNet algorithm (see the module's docstring): its settings, ``C0``, the
    loss scales, and the cost gradients of the thetas. Saved with the model.

    :param cost_weight: ``c``, the one regularization knob; 0 turns the regularizer and pruning off
    :param cost_model: what a unit costs: ``"params"``, the parameters it keeps alive (the paper's), or
        ``"time"``, its share of a training step's time on this device (:mod:`sb3_xinet.time_cost`)
    :param time_calibration: the time model's coefficients (a :class:`TimeCalibration` or its ``to_dict()``);
        None measures them in :meth:`setup`
    :param loss_scale_window: time constant, in gradient steps, of the loss scales ``L_ref``

    Saves from before the gradient scale (their ``loss_scales`` were loss values) load with fresh scales, measured
    from the next gradient step on.
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
        # per loss, the running mean of the squared task gradient of the thetas that pay with it
        self.gradient_scales: dict[str, LossScale] = {}
        self.active = False  # switched on and off by the pruning schedule
        self._reset_transient()

    def _reset_transient(self) -> None:
        """The state of one run that is not saved: tensors of the current networks."""
        self._cache: tuple[int, CostGrads] | None = None
        self.cost_term: th.Tensor | None = None  # c * C / C0 at the last computation, logged as xinet/cost_term
        self._pending_scales: list[tuple[str, th.Tensor]] = []

    def __getstate__(self) -> dict[str, Any]:
        return {key: value for key, value in self.__dict__.items() if key not in ("_cache", "cost_term", "_pending_scales")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        state.pop("loss_scales", None)  # loss values of an older version: not what the gradient scale reads
        self.__dict__.update({"gradient_scales": {}, **state})
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
        """Keep one scale per loss that thetas pay with (a save from an older version measures its missing ones
        afresh)."""
        scales = self.gradient_scales
        self.gradient_scales = {name: scales.get(name, LossScale(self.loss_scale_window)) for name in losses}

    def loss_scale(self, loss: str, n_thetas: int) -> float:
        """``L_ref`` of the ``n_thetas`` unit thetas that pay with ``loss`` (0 until their gradients are
        measured)."""
        return gradient_scale(self.gradient_scales[loss].value, n_thetas)

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
            units = entry.block.unit_gates()
            cost_grads.setdefault(entry.loss, []).extend(
                GateGrad(gate.theta, grads[gate.theta], gate in units) for gate in entry.block.gates()
            )
        self._cache = (1, cost_grads)
        return cost_grads

    def add_gradients(self, cost_grads: CostGrads | None, loss: str) -> None:
        """Record the mean squared task gradient of the unit thetas that pay with ``loss`` (their ``.grad``, which
        must hold the task gradient alone), then add ``c * L_ref / C0 * dC/dtheta`` to every theta that pays."""
        if cost_grads is None:
            return
        gates = cost_grads.get(loss, [])
        task = [gate.theta.grad.flatten() for gate in gates if gate.unit and gate.theta.grad is not None]
        if task:
            self._pending_scales.append((loss, th.cat(task).pow(2).mean()))
        n_thetas = sum(gate.theta.numel() for gate in gates if gate.unit)
        factor = penalty_weight(self.cost_weight, self.loss_scale(loss, n_thetas), self.initial_cost)
        for theta, grad, _ in gates:
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

    def apply_scales(self) -> None:
        """Update the scales with the values recorded since the last call, in their order (one host
        synchronisation)."""
        if self._pending_scales:
            values = th.stack([value for _, value in self._pending_scales]).tolist()
            for (loss, _), value in zip(self._pending_scales, values, strict=True):
                self.gradient_scales[loss].update(value)
        self._pending_scales = []
