"""The loss scale prices a unit against what its network's thetas can change: noise on the rewards (a floor no
network can lower) leaves the pruning pressure (cost gradient over RMS task gradient, per critic layer) where it
was, where the scales before it moved it (the loss level with the floor, the loss a tenth of the units hold with
the flattening of TQC's quantile loss).

The measurement is ``benchmarks.pressure.measure``, on the same rows and gate samples with and without the noise;
the parity of XiNetSAC's and XiNetTQC's pressure at the same widths is that benchmark's, on Hopper-v5.
"""

import pytest

from benchmarks.pressure import measure
from sb3_xinet import XiNetSAC, XiNetTQC
from sb3_xinet.cost import LossScale
from sb3_xinet.regularizer import Regularizer
from tests.helpers import PRUNING

# noise of standard deviation 4 on Pendulum-v1's rewards (-16..0) raises the critics' loss level about 3 times
NOISE = 4.0
# today's pressure moves by less than this per layer (measured: 4% at most, the sampling error of 20 batches)
TOLERANCE = 0.05


@pytest.fixture(scope="module", params=[XiNetSAC, XiNetTQC], ids=["XiNetSAC", "XiNetTQC"])
def pressures(request):
    """The pressure per critic layer and scale without and with noise on the rewards, after 100 steps of pruning."""
    settings = {**PRUNING, "pruning_start": 400, "prune_freq": 10**9, "cost_weight": 1.0}
    model = request.param("MlpPolicy", "Pendulum-v1", **settings).learn(500)
    quiet, noisy = (measure(model, batches=20, noise=noise, seed=0) for noise in (0.0, NOISE))
    return request.param, list(zip(quiet, noisy, strict=True))


def ratios(pairs: list, scale: str) -> list[float]:
    return [after["pressure"] / before["pressure"] for before, after in pairs if before["scale"] == scale]


def test_reward_noise_leaves_the_pressure_where_it_was(pressures):
    algo_class, pairs = pressures
    assert all(abs(ratio - 1) < TOLERANCE for ratio in ratios(pairs, "gradient RMS")), pairs
    # the loss level grows with the floor (about 3 times here)
    assert all(ratio > 2 for ratio in ratios(pairs, "loss level")), pairs
    if algo_class is XiNetTQC:  # a quantile loss flattens as the return distribution widens: 10-26% less here
        assert all(ratio < 1 - TOLERANCE for ratio in ratios(pairs, "held loss")), pairs


def test_a_save_with_loss_values_for_scales_measures_gradient_scales_afresh():
    """A regularizer saved by an older version kept loss values as ``loss_scales``: they are not what the gradient
    scales read, so they go, and the scales start empty (:meth:`Regularizer.track` then makes them)."""
    older = Regularizer()
    state = {**older.__getstate__(), "loss_scales": {"critic0": LossScale(100)}}
    del state["gradient_scales"]
    loaded = Regularizer.__new__(Regularizer)  # as pickle loads it
    loaded.__setstate__(state)
    assert loaded.gradient_scales == {} and not hasattr(loaded, "loss_scales")
    loaded.track(["critic0"])
    assert loaded.gradient_scales["critic0"].count == 0
