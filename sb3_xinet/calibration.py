"""The time model's calibration: the step times of dense twins of a model, and the coefficients fitted to them.

When a model with ``cost_model="time"`` is built without a calibration, :func:`calibrate` builds a few dense
(ungated) copies of its configuration at random shapes (the unpruned one first), times their training step on the
model's device, fits the four coefficients of :class:`~sb3_xinet.time_cost.TimeCalibration` to their fastest
times (non-negative least squares on relative errors, :func:`fit`) and anchors the fixed time so that the
unpruned step is predicted at its measured time (:func:`anchor`). A few seconds on a CPU.
"""

import time
from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.logger import Logger
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm

from sb3_xinet.cost import Priced
from sb3_xinet.time_cost import COEFFICIENTS, TimeCalibration


def work(policy: Priced) -> np.ndarray:
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


def dense_model(model: OffPolicyAlgorithm, architecture: dict[str, Any] | None) -> OffPolicyAlgorithm:
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
        use_sde=model.use_sde,  # gSDE's exploration matrix is part of the actor's step
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


def time_steps(models: list[OffPolicyAlgorithm], steps: int = 2, rounds: int = 10) -> np.ndarray:
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


def measure(model: OffPolicyAlgorithm, shapes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
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


def calibrate(model: OffPolicyAlgorithm, shapes: int = 8, seed: int = 0) -> TimeCalibration:
    """Measure the step time of ``shapes`` dense models shaped like ``model`` (its unpruned shapes and random
    shrinks of them) on its device, fit the coefficients (a few seconds on a CPU) and anchor the fixed time to
    the unpruned step's."""
    features, times = measure(model, shapes, seed)
    coef = anchor(fit(features, times), features, times)
    values = dict(zip(COEFFICIENTS, coef.tolist(), strict=True))
    return TimeCalibration(**values, batch_size=int(model.batch_size), device=str(model.device))
