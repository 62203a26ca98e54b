"""Gated building blocks that can physically remove their own units.

- :class:`GatedLayer`: ``z = xi * act(BN(W x + b))`` with one Bernoulli gate per unit.
- :class:`GatedDenseNet`: a DenseNet branch, each layer's output concatenated to its input. The concat order
  is ``[x, h_1, ..., h_K]`` (MERL's OFENet writes ``[h_K, ..., h_1, x]``, a mere permutation of columns): the
  input then keeps its column positions in the output, so a removed unit is one column index everywhere
  downstream, and a layer that lost every unit passes its input through and is deleted.
- :class:`GatedMLP`: a plain stack (the actor's and critics' hidden layers). A layer there cannot be deleted
  without changing the function (there is no identity path), so an MLP layer keeps at least one unit.

Every block also writes its expected cost as a polynomial in the thetas (:meth:`expected_cost`): each linear
layer priced from its expected input and output widths and the probability that it is there (a
:data:`~sb3_xinet.cost.LayerPrice`: its parameters, or its share of a training step's time). That is what the
cost-aware regularizer charges.

A DenseNet layer can also carry a layer gate (``layer_gate=True``, the time cost model): one more Bernoulli
variable that switches the whole layer, so that the regularizer can charge and remove a layer's fixed cost.

Removal is exact: the network after ``remove_units`` computes what it computed before with those units'
``xi`` forced to 0 (BatchNorm channels are independent, so batch statistics agree too). The optimizers passed
to a removal lose the same entries of their per-parameter state (:mod:`sb3_xinet.surgery`).
"""

from collections.abc import Iterable, Sequence
from typing import Any

import torch as th
import torch.nn.functional as F
from torch import nn

from sb3_xinet.common.checks import check_int
from sb3_xinet.cost import LayerPrice, parameter_price
from sb3_xinet.gates import BernoulliGate, GateEstimator
from sb3_xinet.surgery import (
    drop_parameters_,
    keep_index,
    scale_columns_,
    slice_batch_norm_,
    slice_linear_,
    slice_parameter_,
)

Optimizers = Iterable[th.optim.Optimizer]

# Keras BatchNormalization defaults used by OFENet: momentum 0.99 (PyTorch momentum = 1 - 0.99), eps 1e-3
BN_MOMENTUM = 0.01
BN_EPS = 1e-3
# float32 rounding of sum(theta) after the projection onto sum(theta) >= 1
FLOOR_TOLERANCE = 1e-5


class BatchNorm(nn.BatchNorm1d):
    """OFENet's BatchNorm (Keras defaults: momentum 0.99, eps 1e-3) without the step counter.

    ``num_batches_tracked`` is read only with ``momentum=None``; with a fixed momentum it is a counter nobody
    reads. It is not kept, so that the policy's state dict holds float tensors only, which SB3's policy tests and
    users' code (e.g. ``th.rand_like`` over a state dict) assume. A counter in a state dict saved before is dropped.
    """

    def __init__(self, n_units: int) -> None:
        super().__init__(n_units, momentum=BN_MOMENTUM, eps=BN_EPS)
        self.register_buffer("num_batches_tracked", None)

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any) -> None:
        state_dict.pop(prefix + "num_batches_tracked", None)
        # nn.Module's loader, not _NormBase's: that one adds the counter back for state dicts without a version
        nn.Module._load_from_state_dict(self, state_dict, prefix, *args, **kwargs)


def check_units(units: Sequence[int], what: str, allow_empty: bool) -> list[int]:
    """Validate a list of layer widths: positive integers (and at least one layer unless ``allow_empty``)."""
    widths = list(units)
    if not allow_empty and not widths:
        raise ValueError(f"{what} needs at least one layer, got {widths}")
    return [check_int(f"{what}: the units of each layer in {widths}", width, 1) for width in widths]


def remove_input_columns(consumer: nn.Module, columns: Sequence[int], optimizers: Optimizers = ()) -> None:
    """Remove input columns of a consumer: a ``nn.Linear`` or any block with ``remove_input_columns``."""
    if isinstance(consumer, nn.Linear):
        slice_linear_(
            consumer, columns=keep_index(consumer.in_features, columns, consumer.weight.device), optimizers=optimizers
        )
    else:
        consumer.remove_input_columns(columns, optimizers)


def scale_input_columns(consumer: nn.Module, columns: Sequence[int], factors: th.Tensor, optimizers: Optimizers = ()) -> None:
    """Multiply input columns of a consumer (a ``nn.Linear`` or a block with ``scale_input_columns``) by
    ``factors``: the consumer then computes on ``x / factors`` what it computed on ``x``."""
    if isinstance(consumer, nn.Linear):
        scale_columns_(consumer.weight, columns, factors, optimizers)
    else:
        consumer.scale_input_columns(columns, factors, optimizers)


Folded = tuple[list[int], th.Tensor]
"""Output columns of a block whose gates were folded away, and the thetas its consumers must take over."""


class GatedLayer(nn.Module):
    """One layer of units ``z_j = xi_j * act(BN(W_j x + b_j))``.

    :param in_features: input width
    :param n_units: number of units
    :param activation_fn: activation class
    :param batch_norm: BatchNorm on the pre-activations (Keras defaults, as in OFENet)
    :param gated: multiply each unit by a Bernoulli gate (False gives the dense baseline)
    :param estimator: gradient estimator of the gates
    :param keep_one: the layer keeps an expected width of at least one unit (see :class:`BernoulliGate`)
    :param layer_gate: one more gate, for the whole layer (only where the layer can go: a DenseNet layer)
    """

    def __init__(
        self,
        in_features: int,
        n_units: int,
        activation_fn: type[nn.Module] = nn.SiLU,
        batch_norm: bool = True,
        gated: bool = True,
        estimator: GateEstimator = "straight_through",
        keep_one: bool = False,
        layer_gate: bool = False,
    ) -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, n_units)
        self.bn = BatchNorm(n_units) if batch_norm else None
        self.activation = activation_fn()
        self.gate = BernoulliGate(n_units, estimator, keep_one) if gated else None
        self.layer_gate = BernoulliGate(1, estimator) if gated and layer_gate else None

    @property
    def n_units(self) -> int:
        return self.linear.out_features

    @property
    def in_features(self) -> int:
        return self.linear.in_features

    def forward(self, x: th.Tensor, stochastic: bool = False, batch_stats: bool = False) -> th.Tensor:
        """:param stochastic: sample the gates (else scale by theta)
        :param batch_stats: BatchNorm normalises with (and updates) batch statistics, else uses running ones
        """
        h = self.linear(x)
        if self.bn is not None:
            h = F.batch_norm(
                h,
                self.bn.running_mean,
                self.bn.running_var,
                self.bn.weight,
                self.bn.bias,
                training=batch_stats,
                momentum=self.bn.momentum,
                eps=self.bn.eps,
            )
        h = self.activation(h)
        if self.gate is not None:
            h = self.gate(h, stochastic)
        return h if self.layer_gate is None else self.layer_gate(h, stochastic)

    def gates(self) -> list[BernoulliGate]:
        """The unit gates and the layer gate, where there are."""
        return [gate for gate in (self.gate, self.layer_gate) if gate is not None]

    def presence(self) -> th.Tensor:
        """Probability that the layer is there: its layer gate's theta, else 1."""
        return self.layer_gate.theta.sum() if self.layer_gate is not None else th.ones(())

    def mean_scale(self) -> th.Tensor | None:
        """Each unit's factor in a deterministic pass (theta, times the layer's theta), or None if ungated."""
        if self.gate is None:
            return None
        return self.gate.theta.detach() * self.presence().detach()

    def expected_cost(self, expected_in: th.Tensor, price: LayerPrice = parameter_price) -> tuple[th.Tensor, th.Tensor]:
        """(expected cost, expected number of active units) given the expected input width. The layer is there
        (and pays its per-layer price) when its layer gate is on and at least one of its units is:
        ``theta_layer * (1 - prod_j (1 - theta_j))``, multilinear in the thetas; a layer whose units are all at 0
        costs nothing, whatever its layer gate says."""
        present, extra = self.presence(), 2 if self.bn is not None else 0
        if self.gate is None:
            width = th.as_tensor(float(self.n_units)) * present
            return price(expected_in, width, present, extra), width
        width = self.gate.theta.sum() * present
        return price(expected_in, width, present * (1 - th.prod(1 - self.gate.theta)), extra), width

    def remove_units(self, units: Sequence[int], optimizers: Optimizers = ()) -> None:
        """Remove output units (weight rows, bias, BN entries, theta); consumers are the caller's business."""
        keep = keep_index(self.n_units, units, self.linear.weight.device)
        slice_linear_(self.linear, rows=keep, optimizers=optimizers)
        if self.bn is not None:
            slice_batch_norm_(self.bn, keep, optimizers)
        if self.gate is not None:
            slice_parameter_(self.gate.theta, 0, keep, optimizers)
            # the last sample's log-probability is stale, and its graph would keep theta's old shape alive in
            # autograd (a later backward through theta then fails on the shape)
            self.gate.last_log_prob = None

    def remove_input_columns(self, columns: Sequence[int], optimizers: Optimizers = ()) -> None:
        remove_input_columns(self.linear, columns, optimizers)

    def scale_input_columns(self, columns: Sequence[int], factors: th.Tensor, optimizers: Optimizers = ()) -> None:
        scale_input_columns(self.linear, columns, factors, optimizers)

    def drop_gate_(self, optimizers: Optimizers = ()) -> th.Tensor | None:
        """Remove the gates (their thetas leave the optimizers); return the factors the consumers must take over
        (:meth:`mean_scale`), or None for an ungated layer. The layer then outputs ``act(BN(W x + b))``, unscaled."""
        scale = self.mean_scale()
        if scale is None:
            return None
        drop_parameters_([gate.theta for gate in self.gates()], optimizers)
        self.gate = self.layer_gate = None
        return scale.clone()


class GatedBlock(nn.Module):
    """Shared parts of the gated blocks: the layer list and the gate bookkeeping."""

    layers: nn.ModuleList

    @property
    def units(self) -> list[int]:
        """Current number of units of each existing layer."""
        return [layer.n_units for layer in self.layers]

    def gates(self) -> list[BernoulliGate]:
        """Every gate of the block: each layer's unit gates, then its layer gate."""
        return [gate for layer in self.layers for gate in layer.gates()]

    def unit_gates(self) -> list[BernoulliGate]:
        """The unit gates of the block (no layer gate)."""
        return [layer.gate for layer in self.layers if layer.gate is not None]

    def log_prob(self) -> th.Tensor:
        """Summed log-probability of the last stochastic sample of every REINFORCE gate, per batch element."""
        log_probs = [gate.last_log_prob for gate in self.gates() if gate.last_log_prob is not None]
        if not log_probs:
            raise RuntimeError("No REINFORCE gate has been sampled: run a stochastic forward pass first")
        return th.stack(log_probs).sum(dim=0)

    def project_(self) -> None:
        """Project every theta onto [0, 1]."""
        for gate in self.gates():
            gate.project_()

    def units_at_or_below(self, threshold: float) -> dict[int, list[int]]:
        """Units whose theta is at or below ``threshold``, per layer id; every unit of a layer whose layer gate's
        theta is."""
        found = {}
        for layer_id, layer in zip(self.layer_ids, self.layers, strict=True):
            if layer.layer_gate is not None and float(layer.layer_gate.theta.detach()) <= threshold:
                found[layer_id] = list(range(layer.n_units))
            elif layer.gate is not None:
                units = th.nonzero(layer.gate.theta.detach() <= threshold).flatten().tolist()
                if units:
                    found[layer_id] = units
        return found

    def _position(self, layer_id: int) -> int:
        if layer_id not in self.layer_ids:
            raise ValueError(f"No layer with id {layer_id}; existing layer ids: {self.layer_ids}")
        return self.layer_ids.index(layer_id)


class GatedDenseNet(GatedBlock):
    """A DenseNet branch: layer k reads ``[x, h_1, ..., h_{k-1}]``; the output is ``[x, h_1, ..., h_K]``.

    :param in_features: width of the branch input
    :param units: units of each layer
    :param layer_ids: stable ids of the layers (their index in the unpruned branch); only given when
        rebuilding a pruned branch, which may then have no layer left
    :param layer_gates: each layer also gets a layer gate (see :class:`GatedLayer`)
    """

    def __init__(
        self,
        in_features: int,
        units: Sequence[int],
        layer_ids: Sequence[int] | None = None,
        activation_fn: type[nn.Module] = nn.SiLU,
        batch_norm: bool = True,
        gated: bool = True,
        estimator: GateEstimator = "straight_through",
        layer_gates: bool = False,
    ) -> None:
        super().__init__()
        widths = check_units(units, "GatedDenseNet", allow_empty=layer_ids is not None)
        self.layer_ids = list(range(len(widths))) if layer_ids is None else [int(i) for i in layer_ids]
        if len(self.layer_ids) != len(widths) or len(set(self.layer_ids)) != len(widths):
            raise ValueError(f"layer_ids {self.layer_ids} must be distinct, one per layer of {widths}")
        self.in_features = in_features
        self.layers = nn.ModuleList()
        width = in_features
        for n_units in widths:
            self.layers.append(GatedLayer(width, n_units, activation_fn, batch_norm, gated, estimator, layer_gate=layer_gates))
            width += n_units

    @property
    def out_features(self) -> int:
        return self.in_features + sum(self.units)

    def forward(self, x: th.Tensor, stochastic: bool = False, batch_stats: bool = False) -> th.Tensor:
        for layer in self.layers:
            x = th.cat([x, layer(x, stochastic, batch_stats)], dim=1)
        return x

    def expected_cost(self, expected_in: th.Tensor, price: LayerPrice = parameter_price) -> tuple[th.Tensor, th.Tensor]:
        """(expected cost, expected output width) given the expected input width."""
        total = th.zeros(())
        width = expected_in
        for layer in self.layers:
            cost, units = layer.expected_cost(width, price)
            total = total + cost
            width = width + units
        return total, width

    def remove_units(self, layer_id: int, units: Sequence[int], optimizers: Optimizers = ()) -> list[int]:
        """Remove units of one layer; return the removed columns of the branch output.

        Later layers lose the matching input columns; a layer left with no units is deleted.
        """
        position = self._position(layer_id)
        layer = self.layers[position]
        keep_index(layer.n_units, units, layer.linear.weight.device)  # validate before touching anything
        offset = self.in_features + sum(self.units[:position])
        columns = sorted(offset + int(unit) for unit in units)
        layer.remove_units(units, optimizers)
        for later in self.layers[position + 1 :]:
            later.remove_input_columns(columns, optimizers)
        if layer.n_units == 0:
            drop_parameters_(layer.parameters(), optimizers)
            del self.layers[position]
            del self.layer_ids[position]
        return columns

    def remove_input_columns(self, columns: Sequence[int], optimizers: Optimizers = ()) -> None:
        """Remove input columns; they are the same columns of the branch output."""
        keep_index(self.in_features, columns, th.device("cpu"))  # validate
        for layer in self.layers:
            layer.remove_input_columns(columns, optimizers)
        self.in_features -= len(columns)

    def scale_input_columns(self, columns: Sequence[int], factors: th.Tensor, optimizers: Optimizers = ()) -> None:
        """Scale input columns in every layer (each layer reads the branch input first)."""
        for layer in self.layers:
            layer.scale_input_columns(columns, factors, optimizers)

    def fold_gates_(self, optimizers: Optimizers = ()) -> Folded:
        """Drop every gate; the later layers' columns that read a unit are scaled by its theta, so the branch's
        mean-gated function is unchanged once its consumers take over the returned (columns, thetas)."""
        columns: list[int] = []
        factors = []
        offset = self.in_features
        for position, layer in enumerate(self.layers):
            theta = layer.drop_gate_(optimizers)
            if theta is not None:
                own = list(range(offset, offset + layer.n_units))
                for later in self.layers[position + 1 :]:
                    later.scale_input_columns(own, theta, optimizers)
                columns += own
                factors.append(theta)
            offset += layer.n_units
        return columns, th.cat(factors) if factors else th.ones(0)


class GatedMLP(GatedBlock):
    """A stack of gated layers (no concatenation); the output is the last layer's units.

    Every layer keeps at least one unit: unlike a DenseNet layer, an empty MLP layer would make the
    network's output constant, and its deletion would change the function. Its gates are projected onto
    ``sum(theta) >= 1`` after every step, so the mean-gated layer never outputs zeros, and the removal keeps
    the unit with the largest theta should every theta of a layer still be at or below the threshold.

    :param in_features: input width
    :param units: units of each hidden layer (may be empty: the block then passes its input through)
    """

    def __init__(
        self,
        in_features: int,
        units: Sequence[int],
        activation_fn: type[nn.Module] = nn.ReLU,
        batch_norm: bool = False,
        gated: bool = True,
        estimator: GateEstimator = "straight_through",
    ) -> None:
        super().__init__()
        widths = check_units(units, "GatedMLP", allow_empty=True)
        self.in_features = in_features
        self.layers = nn.ModuleList()
        width = in_features
        for n_units in widths:
            self.layers.append(GatedLayer(width, n_units, activation_fn, batch_norm, gated, estimator, keep_one=True))
            width = n_units

    @property
    def layer_ids(self) -> list[int]:
        return list(range(len(self.layers)))

    @property
    def out_features(self) -> int:
        return self.layers[-1].n_units if len(self.layers) else self.in_features

    def forward(self, x: th.Tensor, stochastic: bool = False, batch_stats: bool = False) -> th.Tensor:
        for layer in self.layers:
            x = layer(x, stochastic, batch_stats)
        return x

    def expected_cost(self, expected_in: th.Tensor, price: LayerPrice = parameter_price) -> tuple[th.Tensor, th.Tensor]:
        """(expected cost, expected output width) given the expected input width."""
        total = th.zeros(())
        width = expected_in
        for layer in self.layers:
            cost, width = layer.expected_cost(width, price)
            total = total + cost
        return total, width

    def remove_units(self, layer_id: int, units: Sequence[int], optimizers: Optimizers = ()) -> list[int]:
        """Remove units of one layer; return the removed output columns (non-empty only for the last layer)."""
        position = self._position(layer_id)
        layer = self.layers[position]
        keep_index(layer.n_units, units, layer.linear.weight.device)
        if len(units) >= layer.n_units:
            raise ValueError(f"Layer {layer_id} of a GatedMLP must keep at least one of its {layer.n_units} units")
        layer.remove_units(units, optimizers)
        if position + 1 < len(self.layers):
            self.layers[position + 1].remove_input_columns(units, optimizers)
            return []
        return sorted(int(unit) for unit in units)

    def remove_input_columns(self, columns: Sequence[int], optimizers: Optimizers = ()) -> None:
        if not len(self.layers):
            raise ValueError("A GatedMLP without layers passes its input through; prune its consumer instead")
        self.layers[0].remove_input_columns(columns, optimizers)
        self.in_features -= len(columns)

    def scale_input_columns(self, columns: Sequence[int], factors: th.Tensor, optimizers: Optimizers = ()) -> None:
        if not len(self.layers):
            raise ValueError("A GatedMLP without layers passes its input through; scale its consumer instead")
        self.layers[0].scale_input_columns(columns, factors, optimizers)

    def fold_gates_(self, optimizers: Optimizers = ()) -> Folded:
        """Drop every gate, scaling the next layer's columns by the thetas; returns the last layer's (columns,
        thetas) for the block's consumer, which must take them over."""
        folded: Folded = ([], th.ones(0))
        for position, layer in enumerate(self.layers):
            theta = layer.drop_gate_(optimizers)
            if theta is None:
                continue
            own = list(range(layer.n_units))
            if position + 1 < len(self.layers):
                self.layers[position + 1].scale_input_columns(own, theta, optimizers)
            else:
                folded = (own, theta)
        return folded

    def units_at_or_below(self, threshold: float) -> dict[int, list[int]]:
        """Like :meth:`GatedBlock.units_at_or_below`, but a layer always keeps its unit with the largest theta
        (the projection that follows a removal brings a lone survivor's theta to 1)."""
        found = super().units_at_or_below(threshold)
        for layer_id, units in found.items():
            layer = self.layers[layer_id]
            if len(units) == layer.n_units:
                units.remove(int(th.argmax(layer.gate.theta.detach())))
        return {layer_id: units for layer_id, units in found.items() if units}

    def layers_at_floor(self) -> list[int]:
        """Ids of the gated layers whose expected width is down to the one unit they must keep."""
        return [
            layer_id
            for layer_id, layer in zip(self.layer_ids, self.layers, strict=True)
            if layer.gate is not None and float(layer.gate.theta.detach().sum()) <= 1.0 + FLOOR_TOLERANCE
        ]
