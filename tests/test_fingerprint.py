"""The training math is unchanged: seeded runs of every algorithm and cost model give the reference's bits.

See :mod:`tests.fingerprint` for what a fingerprint holds and how to rewrite the reference on purpose.
"""

import json

import pytest

from tests.fingerprint import RUNS, cpu_vendor, fingerprints, reference


def differences(want: object, have: object, path: str = "") -> list[str]:
    """Where two JSON values differ, as paths (the first few are enough to say what changed)."""
    if isinstance(want, dict) and isinstance(have, dict):
        found = [f"{path}/{key}: only in one" for key in sorted(set(want) ^ set(have))]
        shared = sorted(set(want) & set(have))
        return found + [line for key in shared for line in differences(want[key], have[key], f"{path}/{key}")]
    if isinstance(want, list) and isinstance(have, list) and len(want) == len(have):
        return [line for i, (a, b) in enumerate(zip(want, have, strict=True)) for line in differences(a, b, f"{path}[{i}]")]
    return [] if want == have else [f"{path}: {str(want)[:60]} -> {str(have)[:60]}"]


def test_training_computes_the_reference_bits():
    """Every run of every algorithm (SAC, TQC) and cost model (parameters, time; REINFORCE gates), through removals
    and the fold: thetas, final parameters, removals and logged values equal the reference bit for bit."""
    path = reference()
    if path is None:
        pytest.skip(f"no fingerprint reference for CPU vendor {cpu_vendor()!r} (see tests/fingerprint.py)")
    want = json.loads(path.read_text())
    assert set(want) == set(RUNS)
    changed = differences(want, fingerprints())
    assert not changed, f"{len(changed)} values differ from {path.name}, e.g.:\n" + "\n".join(changed[:15])
