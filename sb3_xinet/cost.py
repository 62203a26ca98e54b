"""The cost-aware regularizer: each unit pays, per unit of ``c``, the parameters it keeps alive.

``P(theta)`` is the expected parameter count of the gated networks, a multilinear polynomial in the thetas
(each block writes its own part: ``expected_cost`` in :mod:`sb3_xinet.nets` and :mod:`sb3_xinet.ofenet`, with
:func:`parameter_price` as the price of a layer). The time cost model (:mod:`sb3_xinet.time_cost`) prices the
same layers in seconds instead; everything below holds for it with ``P`` read as the expected time.
Its derivative ``dP/dtheta_j`` is the number of parameters unit j keeps alive given the other units (its
row, BatchNorm entries, and its columns in every consumer), so the many per-layer regularization weights
``mu_l`` of the reconstruction ``R = sum_j theta_j mu_l`` are all set by one knob: ``mu_j = c * dP/dtheta_j``
(up to the normalisation below). They follow the network as it shrinks.

Normalisation, so that one ``c`` serves across environments and network sizes: the penalty is

    c * L_ref * P(theta) / P0

with ``P0`` the parameter count of the unpruned network and ``L_ref`` the task loss's typical magnitude,
measured with all units on (its mean over the warm-up before pruning starts, :class:`LossScale`). A unit is
then worth keeping when removing it would raise the task loss by more than ``c`` times its share of the
parameters, in relative terms: ``dL / L_ref > c * dP / P0``. Rescaling the loss (e.g. the observation units
of another environment) or the network leaves the pruning decisions unchanged.

``L_ref`` is not taken from the current batch: the current loss includes the loss that the sampled gates
themselves cause, so a penalty proportional to it grows as units are dropped, a positive feedback that collapsed
even useful units in our toy problem (tests/test_gates.py). :class:`LossScale` measures it with every unit on
before pruning starts, then follows it as a slow moving average (time constant ``loss_scale_window`` steps in
XiNetSAC, far slower than that feedback): SAC's losses grow with the returns over a run.
"""

from collections.abc import Callable, Iterable

import torch as th
from torch import nn

from sb3_xinet.common.checks import check_number

LayerPrice = Callable[[th.Tensor, th.Tensor, th.Tensor, int], th.Tensor]
"""The expected cost of one linear layer from its expected input width, its expected number of units, the
probability that it is there at all, and its parameters per unit besides weights and bias (BatchNorm's 2).
Every argument is a polynomial in the thetas, and so must the price be, in each theta of degree one at most."""

Pricing = Callable[[str], LayerPrice]
"""The price of each part of the policy, by name (``ofenet.state``, ``ofenet.state_action``, ``ofenet.head``,
``actor``, ``critic``)."""


def parameter_price(n_in: th.Tensor, n_out: th.Tensor, present: th.Tensor, extra: int) -> th.Tensor:
    """Weights, biases and the ``extra`` per-unit parameters of a linear layer: the paper's cost."""
    return n_out * (n_in + 1 + extra)


def parameter_pricing(part: str) -> LayerPrice:
    """Every part priced by its parameters."""
    return parameter_price


def check_cost_weight(cost_weight: object) -> float:
    """Validate the user-facing cost weight ``c``: a finite, non-negative number."""
    return check_number("cost_weight", cost_weight, minimum=0)


def cost_penalty(cost_weight: float, expected_params: th.Tensor, initial_params: float, loss_scale: float) -> th.Tensor:
    """``c * L_ref * P(theta) / P0``: add it to the task loss whose gates it regularizes."""
    if initial_params <= 0:
        raise ValueError(f"initial_params must be positive, got {initial_params}")
    return (cost_weight * abs(loss_scale) / initial_params) * expected_params


class LossScale:
    """Mean of a task loss (the ``L_ref`` of the penalty): the plain mean of the first ``window`` updates,
    then an exponential moving average with time constant ``window``.

    Plain floats only, so it saves with the model.
    """

    def __init__(self, window: int = 1000) -> None:
        if window < 1:
            raise ValueError(f"window must be a positive integer, got {window}")
        self.window = window
        self.value = 0.0
        self.count = 0

    def update(self, loss: float) -> None:
        self.count += 1
        rate = 1.0 / min(self.count, self.window)
        self.value += rate * (float(loss) - self.value)


def count_parameters(modules: Iterable[nn.Module]) -> int:
    """Parameters as P counts them: every weight, bias and BatchNorm affine entry, but no theta."""
    return sum(
        param.numel() for module in modules for name, param in module.named_parameters() if not name.endswith("gate.theta")
    )
