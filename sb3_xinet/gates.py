"""Bernoulli unit gates ``xi ~ Bernoulli(theta)`` with learned ``theta`` in [0, 1].

Every gated unit's output is multiplied by ``xi``. ``theta`` is the variable itself (no sigmoid), so it can
reach exactly 0, and it is kept in [0, 1] by a projection after each optimizer step (projected stochastic
gradient, as in the predecessor papers). Two estimators of ``d E[L] / d theta`` are offered:

- ``"straight_through"`` (default): the derivative at the sampled point, ``z = h * (xi + theta - sg(theta))``.
  Cheap and low variance, but biased.
- ``"reinforce"``: the score-function estimator with a leave-one-out baseline. Unbiased, higher variance,
  and it needs the per-sample task loss (see :func:`score_function_loss`).

Sampling is per sample and per unit (like dropout). A gate vector of one entry applied to a layer of many
units is a layer gate: one sample per batch row switches the whole layer (the time cost model's depth gates).
In deterministic mode the gate scales by its mean,
``z = theta * h``: the dropout-style inference rule, continuous in theta, equal to thresholding once theta
has converged to {0, 1} (see docs/design.md).

A gate vector built with ``keep_one=True`` (the hidden layers of the actor and the critics, which have no
identity path) is projected onto ``{theta in [0, 1]^n : sum(theta) >= 1}`` instead of the box: its layer keeps
an expected width of at least one unit, so the regularizer can never switch the whole layer off and leave the
network computing a constant.
"""

from typing import Literal

import torch as th
from torch import nn

GateEstimator = Literal["straight_through", "reinforce"]
ESTIMATORS: tuple[str, ...] = ("straight_through", "reinforce")


class BernoulliGate(nn.Module):
    """A vector of ``n_units`` Bernoulli gates, ``theta`` initialised at 1 (the full network).

    :param n_units: number of gated units
    :param estimator: gradient estimator for theta, ``"straight_through"`` or ``"reinforce"``
    :param keep_one: the projection keeps ``sum(theta) >= 1`` (a layer that must not lose every unit)
    """

    def __init__(self, n_units: int, estimator: GateEstimator = "straight_through", keep_one: bool = False) -> None:
        super().__init__()
        if estimator not in ESTIMATORS:
            raise ValueError(f"Unknown gate estimator {estimator!r}, expected one of {ESTIMATORS}")
        self.estimator = estimator
        self.keep_one = keep_one
        self.theta = nn.Parameter(th.ones(n_units))
        # log-probability of the last stochastic sample (batch,), used by the REINFORCE estimator only
        self.last_log_prob: th.Tensor | None = None
        self._all_on_cache: tuple[tuple[int, int], bool] | None = None

    @property
    def n_units(self) -> int:
        return self.theta.shape[0]

    def forward(self, h: th.Tensor, stochastic: bool) -> th.Tensor:
        """Gate the activations ``h`` of shape (batch, n_units), or of any width for a single (layer) gate.

        :param stochastic: sample ``xi`` (training passes) or scale by ``theta`` (deterministic passes)
        """
        theta = self.theta
        if stochastic:  # a deterministic pass leaves the last sample's log-probability alone
            self.last_log_prob = None
        # Units at theta = 1 have xi = 1 for sure. When every unit is there and the thetas are frozen (XiNetSAC
        # freezes them until pruning starts), the gate is the identity: no sample (as costly as a Linear layer
        # of the same width on CPU), no product. Thetas that learn are never read on the host here.
        if not theta.requires_grad and self._all_on():
            return h
        if not stochastic:
            return h * theta
        if self.estimator == "straight_through":
            return StraightThroughGate.apply(h, theta)
        xi = sample_bernoulli(h, theta.detach())
        self.last_log_prob = bernoulli_log_prob(xi, theta)
        return h * xi

    def _all_on(self) -> bool:
        """Whether every theta is 1. Read on the host only when theta has changed since the last read (its
        version counter moves with every in-place update of the parameter), so a frozen gate costs no device
        synchronisation. Writes through ``theta.data`` do not move it: update a frozen theta in place on the
        parameter itself (``copy_``, ``clamp_``, ``fill_`` under ``no_grad``)."""
        version = (self.theta._version, self.theta.data_ptr())
        if self._all_on_cache is None or self._all_on_cache[0] != version:
            self._all_on_cache = (version, bool((self.theta.detach() >= 1).all()))
        return self._all_on_cache[1]

    @th.no_grad()
    def project_(self) -> None:
        """Project theta back onto its feasible set; call after every optimizer step.

        The box [0, 1]^n, or with ``keep_one`` the box intersected with ``sum(theta) >= 1``: where the clamped
        vector already sums to 1 or more it is the projection; otherwise the sum constraint is active and the
        projection is the one onto the probability simplex. On a GPU this is computed branch-free (no host
        synchronisation); on the CPU, where reading the sum costs nothing, the simplex projection only runs when
        it is needed.
        """
        theta = self.theta
        if not self.keep_one:
            theta.clamp_(0.0, 1.0)
            return
        if theta.device.type == "cpu":
            unprojected = theta.clone()
            if theta.clamp_(0.0, 1.0).sum() < 1.0:
                theta.copy_(project_onto_simplex(unprojected))
            return
        clamped = theta.clamp(0.0, 1.0)
        theta.copy_(th.where(clamped.sum() >= 1.0, clamped, project_onto_simplex(theta)))


class StraightThroughGate(th.autograd.Function):
    """``h * xi`` with ``xi ~ Bernoulli(theta)`` per element, and the straight-through gradient ``d/dtheta =
    sum_b dL/dz_b * h_b``: the same as ``h * (xi + theta - sg(theta))``, in one product forward and two backward."""

    @staticmethod
    def forward(ctx, h: th.Tensor, theta: th.Tensor) -> th.Tensor:  # type: ignore[override]
        xi = sample_bernoulli(h, theta)
        ctx.save_for_backward(h, xi)
        return h * xi

    @staticmethod
    def backward(ctx, grad: th.Tensor) -> tuple[th.Tensor | None, th.Tensor | None]:  # type: ignore[override]
        h, xi = ctx.saved_tensors
        grad_h = grad * xi if ctx.needs_input_grad[0] else None
        grad_theta = None
        if ctx.needs_input_grad[1]:
            grad_theta = (grad * h).sum(dim=0)
            if xi.shape[1] == 1:  # a layer gate: one theta for every unit
                grad_theta = grad_theta.sum(dim=0, keepdim=True)
        return grad_h, grad_theta


def sample_bernoulli(h: th.Tensor, theta: th.Tensor) -> th.Tensor:
    """``xi ~ Bernoulli(theta)`` of shape (batch, len(theta)), in ``h``'s dtype: one sample per row and gate."""
    return (th.rand(h.shape[0], theta.shape[0], device=h.device, dtype=h.dtype) < theta).to(h.dtype)


def project_onto_simplex(y: th.Tensor) -> th.Tensor:
    """Euclidean projection of a vector onto the probability simplex ``{x >= 0, sum(x) = 1}``.

    The sort-based algorithm of Duchi, Shalev-Shwartz, Singer and Chandra, "Efficient projections onto the
    l1-ball for learning in high dimensions" (ICML 2008), written without data-dependent branches.
    """
    u = th.sort(y, descending=True).values
    cumsum = th.cumsum(u, dim=0) - 1.0
    ranks = th.arange(1, y.shape[0] + 1, device=y.device, dtype=y.dtype)
    support = (u - cumsum / ranks > 0).sum().clamp(min=1)
    shift = cumsum.gather(0, (support - 1).reshape(1)) / support.to(y.dtype)
    return (y - shift).clamp(0.0, 1.0)  # the upper bound only catches rounding: sum(x) = 1 and x >= 0


def bernoulli_log_prob(xi: th.Tensor, theta: th.Tensor) -> th.Tensor:
    """Per-sample log-probability ``sum_j log p(xi_j | theta_j)`` of a (batch, n) sample.

    theta is clamped away from {0, 1} inside the logs so that the branch not taken never produces
    ``0 * inf = nan`` gradients; the clamp does not change the value of the branch taken, because at theta
    in {0, 1} only the certain outcome can be sampled.
    """
    tiny = th.finfo(theta.dtype).tiny
    log_on = th.log(theta.clamp(min=tiny))
    log_off = th.log1p(-theta.clamp(max=1.0 - th.finfo(theta.dtype).eps))
    return th.where(xi > 0, log_on, log_off).sum(dim=-1)


def score_function_loss(log_prob: th.Tensor, per_sample_loss: th.Tensor) -> th.Tensor:
    """Surrogate whose gradient w.r.t. theta is the REINFORCE estimate of ``d E[L] / d theta``.

    Uses a leave-one-out baseline (the mean loss of the other samples in the batch), which keeps the
    estimator unbiased while removing most of its variance. The value of the surrogate is meaningless; only
    its gradient is. Add it to the task loss.

    :param log_prob: (batch,) summed log-probability of every gate's sample for each batch element
    :param per_sample_loss: (batch,) task loss of each batch element
    """
    if per_sample_loss.shape != log_prob.shape:
        raise ValueError(f"per_sample_loss has shape {tuple(per_sample_loss.shape)}, expected {tuple(log_prob.shape)}")
    n = per_sample_loss.shape[0]
    if n < 2:
        raise ValueError("The REINFORCE estimator needs a batch of at least 2 samples for its baseline")
    loss = per_sample_loss.detach()
    baseline = (loss.sum() - loss) / (n - 1)
    return ((loss - baseline) * log_prob).mean()
