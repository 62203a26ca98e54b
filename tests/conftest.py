"""Shared fixtures. One torch thread: the test networks are tiny, and OpenMP threads only wait on each other for them.

The tests that take the ``model_class`` fixture run once per XiNet algorithm (``tests.helpers.MODEL_LIST``).
"""

import pytest
import torch as th

from tests.helpers import MODEL_LIST

th.set_num_threads(1)


@pytest.fixture(params=MODEL_LIST, ids=[cls.__name__ for cls in MODEL_LIST])
def model_class(request):
    """Each XiNet algorithm in turn."""
    return request.param
