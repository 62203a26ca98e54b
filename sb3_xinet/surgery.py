"""Tensor surgery: shrink parameters, buffers and every optimizer state that mirrors them.

Parameters are shrunk *in place* (``param.data = ...``): the ``nn.Parameter`` object stays the same, so every
optimizer that holds it keeps a valid param list and its per-parameter state (Adam's ``exp_avg``,
``exp_avg_sq``, ``max_exp_avg_sq``, SGD's ``momentum_buffer``, ...) can be sliced on the same indices.
Training then continues exactly as if the removed entries had been gated off: Adam is element-wise, so the
surviving entries never saw the removed ones. We write this ourselves because ``torch.nn.utils.prune`` only
masks (pytorch/pytorch#36214) and Torch-Pruning (Fang et al., "DepGraph", CVPR 2023) replaces the parameter
objects and mis-tracks DenseNet concatenations of raw inputs.
"""

from collections.abc import Iterable, Sequence

import torch as th
from torch import nn

# per-parameter optimizer states that average squared gradients (torch.optim's Adam/AdamW/RMSprop names)
SECOND_MOMENTS = {"exp_avg_sq", "max_exp_avg_sq", "square_avg"}


def keep_index(size: int, remove: Sequence[int], device: th.device) -> th.Tensor:
    """Indices in ``range(size)`` that are not in ``remove``, after validating ``remove``.

    :raises ValueError: on an out-of-range or duplicate index
    """
    removed = [int(i) for i in remove]
    bad = [i for i in removed if not 0 <= i < size]
    if bad:
        raise ValueError(f"Unit indices {bad} are out of range for a dimension of size {size}")
    if len(set(removed)) != len(removed):
        raise ValueError(f"Duplicate unit indices in {sorted(removed)}")
    mask = th.ones(size, dtype=th.bool)
    mask[removed] = False
    return th.nonzero(mask).flatten().to(device)


def slice_parameter_(param: nn.Parameter, dim: int, keep: th.Tensor, optimizers: Iterable[th.optim.Optimizer] = ()) -> None:
    """Keep only the entries ``keep`` of ``param`` along ``dim``, in its gradient and in every optimizer state."""
    old_shape = param.shape
    param.data = param.data.index_select(dim, keep)
    if param.grad is not None:
        param.grad = param.grad.index_select(dim, keep)
    for optimizer in optimizers:
        state = optimizer.state.get(param)
        if not state:
            continue
        for key, value in state.items():
            if th.is_tensor(value) and value.shape == old_shape:
                state[key] = value.index_select(dim, keep)


def slice_linear_(
    linear: nn.Linear, *, rows: th.Tensor | None = None, columns: th.Tensor | None = None, optimizers=()
) -> None:
    """Keep the output ``rows`` and/or input ``columns`` of a Linear layer (and of its optimizer states)."""
    if rows is not None:
        slice_parameter_(linear.weight, 0, rows, optimizers)
        if linear.bias is not None:
            slice_parameter_(linear.bias, 0, rows, optimizers)
        linear.out_features = linear.weight.shape[0]
    if columns is not None:
        slice_parameter_(linear.weight, 1, columns, optimizers)
        linear.in_features = linear.weight.shape[1]


def slice_batch_norm_(bn: nn.BatchNorm1d, keep: th.Tensor, optimizers=()) -> None:
    """Keep the channels ``keep`` of a BatchNorm layer: affine parameters and running statistics."""
    for param in (bn.weight, bn.bias):
        if param is not None:
            slice_parameter_(param, 0, keep, optimizers)
    if bn.running_mean is not None:
        bn.running_mean = bn.running_mean.index_select(0, keep)
        bn.running_var = bn.running_var.index_select(0, keep)
    bn.num_features = keep.numel()


def drop_parameters_(params: Iterable[nn.Parameter], optimizers: Iterable[th.optim.Optimizer]) -> None:
    """Take parameters out of every optimizer (param groups and state), e.g. those of a deleted layer.

    Left in, they would be empty tensors that still count in ``optimizer.state_dict()``, whose param groups
    would then no longer match those of an optimizer rebuilt from the pruned network on load.
    """
    dropped = {id(param) for param in params}
    for optimizer in optimizers:
        for group in optimizer.param_groups:
            for param in group["params"]:
                if id(param) in dropped:
                    optimizer.state.pop(param, None)
            group["params"] = [param for param in group["params"] if id(param) not in dropped]
        # a group left empty (e.g. the thetas' once the gates are folded) would not be rebuilt on load either
        optimizer.param_groups[:] = [group for group in optimizer.param_groups if group["params"]]


@th.no_grad()
def scale_columns_(
    param: nn.Parameter, columns: Sequence[int], factors: th.Tensor, optimizers: Iterable[th.optim.Optimizer] = ()
) -> None:
    """Multiply input columns of a weight matrix by ``factors``, and keep every optimizer's moments consistent.

    The reparameterisation ``w' = f * w`` (for an input ``x' = x / f``) divides the gradient by ``f``, so first
    moments (Adam's ``exp_avg``, SGD's ``momentum_buffer``) are divided by ``f`` and second moments
    (``exp_avg_sq``, ``max_exp_avg_sq``) by ``f**2``: the optimizer then continues as if it had always trained
    the new parameters. Every factor must be positive.
    """
    index = th.as_tensor(list(columns), dtype=th.long, device=param.device)
    factors = factors.to(param.device, param.dtype)
    param.data[:, index] *= factors
    for optimizer in optimizers:
        state = optimizer.state.get(param, {})
        for key, value in state.items():
            if th.is_tensor(value) and value.shape == param.shape:
                value[:, index] /= factors**2 if key in SECOND_MOMENTS else factors
