"""The parameter cost: the expected parameter count ``P(theta)`` of the gated networks, and the prices it is made of.

``P(theta)`` is the expected parameter count of the gated networks, a multilinear polynomial in the thetas
(each block writes its own part: ``expected_cost`` in :mod:`sb3_xinet.nets` and :mod:`sb3_xinet.ofenet`, with
:func:`parameter_price` as the price of a layer). The time cost model (:mod:`sb3_xinet.time_cost`) prices the
same layers in seconds instead.
Its derivative ``dP/dtheta_j`` is the number of parameters unit j keeps alive given the other units (its
row, BatchNorm entries, and its columns in every consumer), so the many per-layer regularization weights
``mu_l`` of the reconstruction ``R = sum_j theta_j mu_l`` are all set by one knob: ``mu_j = c * dP/dtheta_j``
(up to a normalisation). They follow the network as it shrinks.

How ``c`` weighs this cost against the losses is the regularizer's (:mod:`sb3_xinet.regularizer`).
"""

from collections.abc import Callable, Iterable
from typing import Protocol

import torch as th
from torch import nn

LayerPrice = Callable[[th.Tensor, th.Tensor, th.Tensor, int], th.Tensor]
"""The expected cost of one linear layer from its expected input width, its expected number of units, the
probability that it is there at all, and its parameters per unit besides weights and bias (BatchNorm's 2).
Every argument is a polynomial in the thetas, and so must the price be, in each theta of degree one at most."""

Pricing = Callable[[str], LayerPrice]
"""The price of each part of the policy, by its name (:data:`sb3_xinet.blocks.Part`)."""


def parameter_price(n_in: th.Tensor, n_out: th.Tensor, present: th.Tensor, extra: int) -> th.Tensor:
    """Weights, biases and the ``extra`` per-unit parameters of a linear layer: the paper's cost."""
    return n_out * (n_in + 1 + extra)


def parameter_pricing(part: str) -> LayerPrice:
    """Every part priced by its parameters."""
    return parameter_price


class Priced(Protocol):
    """Anything whose expected cost is a polynomial in its thetas under a pricing (a policy)."""

    def expected_cost(self, pricing: Pricing = parameter_pricing) -> th.Tensor: ...


class LossScale:
    """Running mean of a loss's scale (the mean squared task gradient behind ``L_ref``,
    :mod:`sb3_xinet.regularizer`): the n-th update weighted by n**2 at first, then an exponential moving average
    with time constant ``window`` (from the update where its rate, ``n**2 / sum(k**2)``, about ``3 / n``, falls to
    ``1 / window``).

    The growing weights forget the first updates: a plain mean would keep them (the gradients of the networks as
    they were when pruning started) in the scale for the whole window; here the first tenth of the updates weighs
    0.1% of the mean.

    Plain floats only, so it saves with the model (and it stays in this module, where saves refer to it).
    """

    def __init__(self, window: int = 1000) -> None:
        if window < 1:
            raise ValueError(f"window must be a positive integer, got {window}")
        self.window = window
        self.value = 0.0
        self.count = 0

    def update(self, loss: float) -> None:
        self.count += 1
        n = self.count
        rate = max(1.0 / self.window, 6.0 * n / ((n + 1) * (2 * n + 1)))  # n**2 / sum(k**2 for k <= n)
        self.value += rate * (float(loss) - self.value)


def count_parameters(modules: Iterable[nn.Module]) -> int:
    """Parameters as P counts them: every weight, bias and BatchNorm affine entry, but no theta."""
    return sum(
        param.numel() for module in modules for name, param in module.named_parameters() if not name.endswith("gate.theta")
    )
