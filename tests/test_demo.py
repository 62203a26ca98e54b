"""The README's first command, on a short budget: it trains, prunes, reloads, evaluates and writes a C actor that
compiles, smaller than the dense network's."""

import re
import subprocess
import sys

import numpy as np
import pytest

from sb3_xinet.c_actor import c_actions, c_compiler, compile_driver


@pytest.mark.slow
def test_the_demo_ends_with_a_c_actor_and_its_size_next_to_the_dense_one(tmp_path):
    command = [sys.executable, "-m", "sb3_xinet.demo", "--steps", "600", "--episodes", "1", "--c-out", str(tmp_path)]
    output = subprocess.run(command, capture_output=True, text=True, check=True, cwd=tmp_path).stdout
    assert "pruning ended, gates folded into the weights" in output
    sizes = {name: int(re.search(rf"{name}: +([\d,]+) weights", output)[1].replace(",", "")) for name in ("pruned", "dense")}
    pruned, dense = sizes["pruned"], sizes["dense"]
    assert 0 < pruned < dense
    assert (tmp_path / "xinet.h").exists() and (tmp_path / "xinet.c").exists()
    if c_compiler() is not None:
        actions = c_actions(compile_driver(tmp_path), np.zeros((2, 3), dtype=np.float32), action_dim=1)
        assert np.all(np.abs(actions) <= 2.0)
