"""One torch thread: the test networks are tiny, and OpenMP threads only wait on each other for them."""

import torch as th

th.set_num_threads(1)
