"""Exported TorchScript and ONNX actors act as ``model.predict(deterministic=True)``, without SB3 or sb3_xinet."""

import subprocess
import sys
import textwrap

import gymnasium as gym
import numpy as np
import pytest
import torch as th

from sb3_xinet import XiNetTQC
from sb3_xinet.export import deterministic_actor, export
from tests.helpers import PRUNING, SpacesEnv, make_model
from tests.test_time_cost import CALIBRATION

# What a deployment host runs: torch and onnxruntime only
CHECK = """
import sys
import numpy as np
import onnxruntime
import torch

obs = np.load(sys.argv[1])
np.save(sys.argv[2], torch.jit.load(sys.argv[3])(torch.as_tensor(obs)).detach().numpy())
session = onnxruntime.InferenceSession(sys.argv[4], providers=["CPUExecutionProvider"])
np.save(sys.argv[5], session.run(None, {"observation": obs})[0])
assert not {"sb3_xinet", "stable_baselines3"} & set(sys.modules), "the exported files must not need them"
"""


@pytest.fixture(scope="module")
def models():
    pruned = make_model().learn(400)
    assert pruned.pruning_summary().params < pruned.pruning_summary().initial_params
    dense = make_model(cost_weight=0.0, policy_kwargs={**PRUNING["policy_kwargs"], "gates": "none"}).learn(150)
    folded = make_model(pruning_end=300).learn(400)
    assert folded.pruning_ended
    # the time cost model's layer gates, each unit's and each layer's theta anywhere in (0, 1]
    layer_gated = make_model(cost_model="time", time_calibration=CALIBRATION, pruning_start=None).learn(150)
    generator = th.Generator().manual_seed(0)
    with th.no_grad():
        for gate in layer_gated.policy.ofenet.state.gates() + layer_gated.policy.actor.latent_pi.gates():
            gate.theta.copy_(th.rand(gate.n_units, generator=generator) * 0.9 + 0.1)
    tqc = make_model(model_class=XiNetTQC, pruning_end=300).learn(400)
    return {"pruned": pruned, "dense": dense, "folded": folded, "layer_gated": layer_gated, "tqc": tqc}


@pytest.mark.slow
@pytest.mark.parametrize("name", ["pruned", "dense", "folded", "layer_gated", "tqc"])
def test_exported_actors_match_predict_in_a_process_without_sb3_xinet(models, name, tmp_path):
    model = models[name]
    paths = export(model, tmp_path / "actor")
    obs = np.random.default_rng(0).uniform(-8, 8, size=(64, 3)).astype(np.float32)
    np.save(tmp_path / "obs.npy", obs)
    outputs = [tmp_path / "torchscript.npy", tmp_path / "onnx.npy"]
    command = [sys.executable, "-I", "-c", textwrap.dedent(CHECK), str(tmp_path / "obs.npy"), str(outputs[0])]
    subprocess.run([*command, str(paths["torchscript"]), str(paths["onnx"]), str(outputs[1])], check=True, cwd=tmp_path)
    expected, _ = model.predict(obs, deterministic=True)
    for output in outputs:
        np.testing.assert_allclose(np.load(output), expected, atol=1e-5)


def test_the_exported_actor_reads_flat_observations_and_returns_flat_actions(tmp_path):
    """A 2-D Box observation and a 2-D Box action: the exported actor maps the flattened observation to the
    flattened action that ``predict`` returns in the action space's shape."""
    env = SpacesEnv(gym.spaces.Box(-1, 1, (3, 2)), gym.spaces.Box(-2, 2, (2, 2)))
    model = make_model(env).learn(300)
    obs = np.random.default_rng(0).uniform(-1, 1, size=(8, 3, 2)).astype(np.float32)
    scripted = th.jit.load(str(export(model, tmp_path / "actor", onnx=False)["torchscript"]))
    expected, _ = model.predict(obs, deterministic=True)
    actions = scripted(th.as_tensor(obs.reshape(8, 6))).detach().numpy()
    np.testing.assert_allclose(actions, expected.reshape(8, 4), atol=1e-5)


def test_export_folds_batch_norm_and_keeps_the_pruned_shapes(models):
    model = models["pruned"]
    actor = deterministic_actor(model)
    assert len(actor.dense) == len(model.policy.ofenet.state.layers)
    for exported, layer in zip(actor.dense, model.policy.ofenet.state.layers, strict=True):
        assert exported.linear.weight.shape == layer.linear.weight.shape
    assert not any("bn" in name or "running" in name for name, _ in actor.named_parameters())


@pytest.mark.slow
@pytest.mark.parametrize("name", ["pruned", "tqc"])
def test_export_command(models, tmp_path, name):
    model = models[name]
    model.save(tmp_path / "model.zip")
    result = subprocess.run(
        [sys.executable, "-m", "sb3_xinet.export", str(tmp_path / "model.zip"), "--out", str(tmp_path / "out" / "actor")],
        capture_output=True,
        text=True,
        check=True,
    )
    assert (tmp_path / "out" / "actor.pt").exists() and (tmp_path / "out" / "actor.onnx").exists()
    assert "parameters" in result.stdout and "us per observation" in result.stdout
