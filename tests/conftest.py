"""Shared fixtures. One torch thread: the test networks are tiny, and OpenMP threads only wait on each other for them.

``MODEL_LIST`` (SB3's way of running a test over algorithms): the tests that take the ``model_class`` fixture run
once per XiNet algorithm.
"""

import pytest
import torch as th

from sb3_xinet import XiNetSAC, XiNetTQC

th.set_num_threads(1)

MODEL_LIST = [XiNetSAC, XiNetTQC]


@pytest.fixture(params=MODEL_LIST, ids=[cls.__name__ for cls in MODEL_LIST])
def model_class(request):
    """Each XiNet algorithm in turn."""
    return request.param
