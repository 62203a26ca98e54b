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

The four coefficients are measured, not guessed (:func:`calibrate`): when the model is built, a few dense
OFENet-SACs of random shapes run their training step on the model's device, and the coefficients are fitted to
their fastest times (non-negative least squares on relative errors), the fixed time anchored so that the
unpruned step is predicted at its measured time (:func:`anchor`). They are saved with the model and can be
passed in (``time_calibration``), e.g. to reuse one calibration across seeds so that runs are reproducible. The
penalty divides ``T`` by its value for the unpruned network, so ``c`` keeps its meaning (relative cost against
relative loss), and a machine uniformly slower or faster than the one calibrated on prices units the same.
The model describes the step after pruning has ended (plain OFENet-SAC at the pruned widths, no gates): the time
the user pays for most of a run.
"""

import time
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.logger import Logger

from sb3_xinet.common.checks import check_number
from sb3_xinet.cost import LayerPrice, Pricing

if TYPE_CHECKING:
    from sb3_xinet.common.algorithm import XiNetAlgorithm
    from sb3_xinet.policies import XiNetPolicy

PASSES: dict[str, int] = {
    # aux loss forward + backward (3), phi_s of observations and next observations (2)
    "ofenet.state": 5,
    # the same (5), plus phi_sa(s, pi(s)) for the actor loss: forward, backward to the action (2)
    "ofenet.state_action": 7,
    # aux loss forward + backward
    "ofenet.head": 3,
    # pi(s) forward + backward (3), pi(s') for the target (1)
    "actor": 4,
    # Q(s, a) forward + backward (3), its target copy on s' (1), Q(s, pi(s)) forward + backward to the action (2)
    "critic": 6,
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

        def price_of(part: str) -> LayerPrice:
            passes = PASSES[part]

            def price(n_in: th.Tensor, n_out: th.Tensor, present: th.Tensor, extra: int) -> th.Tensor:
                return passes * (self.per_mac * n_in * n_out + self.per_unit * n_out + self.per_layer * present)

            return price

        return price_of

    def expected_time(self, policy: "XiNetPolicy") -> th.Tensor:
        """``T(theta)``: the expected seconds of one training step of ``policy``."""
        return policy.expected_cost(self.pricing()) + self.fixed


def work(policy: "XiNetPolicy") -> np.ndarray:
    """The regressors of a policy's step time: its multiply-adds, units and layers, each weighted by its passes,
    and 1 (for the fixed time)."""
    columns = []
    for name in COEFFICIENTS[:3]:
        unit = TimeCalibration(**{key: float(key == name) for key in COEFFICIENTS}, batch_size=1, device="")
        columns.append(float(policy.expected_cost(unit.pricing()).detach()))
    return np.array([*columns, 1.0])


def fit(features: np.ndarray, times: np.ndarray) -> np.ndarray:
    """Non-negative least squares on relative errors: ``features @ coef ~ times`` with ``coef >= 0``.

    Relative errors, because the shapes range over an order of magnitude of time and a model off by 10% matters
    as much for a small network as for a big one. Active set: drop the most negative coefficient and refit until
    none is negative (four coefficients: numpy's lstsq suffices).
    """
    weighted, target = features / times[:, None], np.ones_like(times)
    active = list(range(features.shape[1]))
    while True:
        solution = np.linalg.lstsq(weighted[:, active], target, rcond=None)[0]
        if (solution >= 0).all():
            coef = np.zeros(features.shape[1])
            coef[active] = solution
            return coef
        active.pop(int(np.argmin(solution)))


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation of two samples without ties (scipy is not among our dependencies for this)."""
    rank_a, rank_b = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(rank_a, rank_b)[0, 1])


def random_architecture(rng: np.random.Generator, architecture: dict[str, Any]) -> dict[str, Any]:
    """A random shrink of an unpruned ``XiNetPolicy.architecture()``: each OFENet branch keeps a random number of
    its layers at random widths up to the largest, each hidden layer of the actor and critics a random width
    (log-uniform) up to its own."""

    def branch(units: list[int]) -> tuple[list[int], list[int]]:
        kept = sorted(rng.choice(len(units), size=rng.integers(0, len(units) + 1), replace=False).tolist())
        return [int(rng.integers(1, max(units) + 1)) for _ in kept], kept

    def head(units: list[int]) -> list[int]:
        return [int(np.exp(rng.uniform(0.0, np.log(width + 1)))) or 1 for width in units]

    state_units, state_ids = branch(architecture["ofenet"]["state_units"])
    state_action_units, state_action_ids = branch(architecture["ofenet"]["state_action_units"])
    return {
        "ofenet": dict(
            state_units=state_units,
            state_action_units=state_action_units,
            state_layer_ids=state_ids,
            state_action_layer_ids=state_action_ids,
        ),
        "actor": head(architecture["actor"]),
        "critics": [head(units) for units in architecture["critics"]],
    }


def dense_model(model: "XiNetAlgorithm", architecture: dict[str, Any] | None) -> "XiNetAlgorithm":
    """A dense (ungated) copy of ``model``'s configuration at the given shapes, its replay buffer full of random
    transitions, ready for the algorithm's ``train``. ``None``: the unpruned shapes."""
    policy_kwargs = {key: value for key, value in model.policy_kwargs.items() if key != "architecture"}
    policy_kwargs.update(gates="none", architecture=architecture)
    buffer_size = 4 * model.batch_size
    twin = type(model)(
        "MlpPolicy",
        model.env,
        learning_rate=model.learning_rate,
        buffer_size=buffer_size,
        learning_starts=0,
        batch_size=model.batch_size,
        ent_coef=model.ent_coef,
        target_entropy=model.target_entropy,
        policy_kwargs=policy_kwargs,
        device=model.device,
        cost_weight=0.0,
        ofenet_pretrain_steps=0,
    )
    twin.set_logger(Logger(folder=None, output_formats=[]))
    buffer = twin.replay_buffer
    rng = np.random.default_rng(0)
    for name in ("observations", "next_observations", "actions", "rewards"):
        array = getattr(buffer, name)
        if name.endswith("observations") and not isinstance(model.observation_space, spaces.Box):
            # codes (Discrete, MultiDiscrete, MultiBinary) must be valid ones for the one-hot preprocessing
            samples = [model.observation_space.sample() for _ in range(array.shape[0] * array.shape[1])]
            array[:] = np.asarray(samples, dtype=array.dtype).reshape(array.shape)
        else:
            array[:] = rng.uniform(-1.0, 1.0, size=array.shape).astype(array.dtype)
    buffer.full = True
    return twin


def time_steps(models: list["XiNetAlgorithm"], steps: int = 2, rounds: int = 10) -> np.ndarray:
    """Seconds per gradient step of each model's ``train`` (after one warm-up call each): the fastest of
    ``rounds`` calls of ``steps`` gradient steps. The rounds go over all the models in turn, so that a burst of
    load from another process slows one call of each model rather than every call of one; and the minimum, as
    ``timeit`` advises: other processes only ever add time, the fastest call is the best estimate of the step."""
    synchronize = th.cuda.synchronize if models[0].device.type == "cuda" else lambda: None
    for model in models:
        model.train(gradient_steps=2, batch_size=model.batch_size)
    best = np.full(len(models), np.inf)
    for _ in range(rounds):
        for index, model in enumerate(models):
            synchronize()
            start = time.perf_counter()
            model.train(gradient_steps=steps, batch_size=model.batch_size)
            synchronize()
            best[index] = min(best[index], (time.perf_counter() - start) / steps)
    return best


def measure(model: "XiNetAlgorithm", shapes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(work, seconds per step)`` of dense models of ``shapes`` random shapes (the first one unpruned).

    Leaves the global torch and numpy random states as they were: calibrating does not change a seeded run.
    """
    rng = np.random.default_rng(seed)
    numpy_state = np.random.get_state()
    with th.random.fork_rng(devices=[model.device] if model.device.type == "cuda" else []):
        twins = [dense_model(model, None)]
        unpruned = twins[0].policy.architecture()
        twins += [dense_model(model, random_architecture(rng, unpruned)) for _ in range(shapes - 1)]
        times = time_steps(twins)
    np.random.set_state(numpy_state)
    return np.array([work(twin.policy) for twin in twins]), times


def anchor(coef: np.ndarray, features: np.ndarray, times: np.ndarray) -> np.ndarray:
    """``coef`` with its fixed time set so that the first shape (the unpruned one) is predicted at its measured
    time (not below 0).

    The fixed time only enters the penalty through ``T0``, the unpruned step's time that normalises it, and it is
    the least well identified coefficient: the actor's and the critics' layers are always there, so their
    per-layer time and the fixed time trade off freely in the fit (two calibrations of one model gave 0 and 5 ms).
    Anchored, ``T0`` is the measured time of the unpruned step, and ``c`` the same from one calibration to the next.
    """
    anchored = coef.copy()
    anchored[-1] = max(0.0, float(times[0] - features[0, :-1] @ coef[:-1]))
    return anchored


def calibrate(model: "XiNetAlgorithm", shapes: int = 8, seed: int = 0) -> TimeCalibration:
    """Measure the step time of ``shapes`` dense models shaped like ``model`` (its unpruned shapes and random
    shrinks of them) on its device, fit the coefficients (a few seconds on a CPU) and anchor the fixed time to
    the unpruned step's."""
    features, times = measure(model, shapes, seed)
    coef = anchor(fit(features, times), features, times)
    values = dict(zip(COEFFICIENTS, coef.tolist(), strict=True))
    return TimeCalibration(**values, batch_size=int(model.batch_size), device=str(model.device))
