"""Run Stable-Baselines3's and sb3-contrib's own test files against XiNetSAC and XiNetTQC.

``run.sh`` copies this file, as ``conftest.py``, next to the upstream ``tests/`` folder. Before the test modules
import, SB3's ``SAC`` becomes :class:`~sb3_xinet.XiNetSAC` and sb3-contrib's ``TQC`` becomes
:class:`~sb3_xinet.XiNetTQC` (a test's ``model_class == SAC`` then means ours), and only the tests that exercise
them are kept: those parametrized with one of them, and those not parametrized by algorithm whose body builds
``SAC(`` or ``TQC(`` by name.
"""

import inspect

import pytest
import sb3_contrib
import stable_baselines3
from stable_baselines3.common.base_class import BaseAlgorithm

from sb3_xinet import XiNetSAC, XiNetTQC

stable_baselines3.SAC = XiNetSAC
sb3_contrib.TQC = XiNetTQC
OURS = (XiNetSAC, XiNetTQC)


def exercises_ours(item: pytest.Item) -> bool:
    """Whether a collected test runs XiNetSAC or XiNetTQC."""
    values = []
    for value in getattr(getattr(item, "callspec", None), "params", {}).values():
        values.extend(value if isinstance(value, (tuple, list)) else [value])
    algos = [value for value in values if inspect.isclass(value) and issubclass(value, BaseAlgorithm)]
    if algos:
        return any(issubclass(algo, OURS) for algo in algos)
    source = inspect.getsource(item.function)
    return "SAC(" in source or "TQC(" in source


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    kept = [item for item in items if exercises_ours(item)]
    config.hook.pytest_deselected(items=[item for item in items if item not in kept])
    items[:] = kept
