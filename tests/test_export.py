"""Exported actors (torch.export, ONNX, C) act as ``model.predict(deterministic=True)``, without SB3 or sb3_xinet."""

import subprocess
import sys
import textwrap
import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from sb3_contrib import TQC
from stable_baselines3 import SAC, TD3

from sb3_xinet import XiNetTQC
from sb3_xinet.c_actor import c_actions, c_compiler, c_sources, compile_driver, work_floats
from sb3_xinet.export import export
from sb3_xinet.plain_actor import actor_of, deterministic_actor, load_model
from tests.helpers import PRUNING, SpacesEnv, make_model
from tests.test_time_cost import CALIBRATION

# What a deployment host runs: torch and onnxruntime only. argv: observations, then (program, ONNX, output) triples
CHECK = """
import sys
import numpy as np
import onnxruntime
import torch

obs = np.load(sys.argv[1])
for program_path, onnx_path, output in zip(*[iter(sys.argv[2:])] * 3):
    program = torch.export.load(program_path).module()
    session = onnxruntime.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
    np.save(output, np.stack([program(torch.as_tensor(obs)).detach().numpy(), session.run(None, {"observation": obs})[0]]))
assert not {"sb3_xinet", "stable_baselines3"} & set(sys.modules), "the exported files must not need them"
"""
NAMES = ["pruned", "dense", "folded", "layer_gated", "tqc", "layer_removed", "sde", "sac"]
needs_cc = pytest.mark.skipif(c_compiler() is None, reason="no C compiler (cc, gcc or clang) on this machine")


def without_ofenet_layer(model):
    """The model with OFENet's second state layer emptied and removed (the rest of the network adapts)."""
    with th.no_grad():
        model.policy.ofenet.state.layers[1].gate.theta.zero_()
    model.prune()
    assert list(model.policy.ofenet.state.layer_ids) == [0, 2]
    return model


@pytest.fixture(scope="module")
def models():
    # c = 5: the tests' c = 20 leaves the actor too few units to act beyond |a| = 0.1, where the C check reads
    pruned = make_model(cost_weight=5.0).learn(400)
    assert pruned.pruning_summary().params < pruned.pruning_summary().initial_params
    dense = make_model(cost_weight=0.0, policy_kwargs={**PRUNING["policy_kwargs"], "gates": "none"}).learn(150)
    folded = make_model(cost_weight=5.0, pruning_end=300).learn(400)
    assert folded.pruning_ended
    # the time cost model's layer gates, each unit's and each layer's theta anywhere in (0, 1]
    layer_gated = make_model(cost_model="time", time_calibration=CALIBRATION, pruning_start=None).learn(150)
    generator = th.Generator().manual_seed(0)
    with th.no_grad():
        for gate in layer_gated.policy.ofenet.state.gates() + layer_gated.policy.actor.latent_pi.gates():
            gate.theta.copy_(th.rand(gate.n_units, generator=generator) * 0.9 + 0.1)
    tqc = make_model(model_class=XiNetTQC, cost_weight=5.0, pruning_end=300).learn(400)
    layer_removed = without_ofenet_layer(make_model(pruning_start=None).learn(150))
    sde = make_model(use_sde=True, cost_weight=5.0, pruning_end=300).learn(400)
    sac = SAC("MlpPolicy", "Pendulum-v1", learning_starts=50, policy_kwargs=dict(net_arch=[16, 16]), seed=0).learn(100)
    named = dict(pruned=pruned, dense=dense, folded=folded, layer_gated=layer_gated, tqc=tqc, layer_removed=layer_removed)
    return {**named, "sde": sde, "sac": sac}


def pendulum_observations(n: int) -> np.ndarray:
    return np.random.default_rng(0).uniform(-8, 8, size=(n, 3)).astype(np.float32)


def test_exported_programs_and_onnx_match_predict_in_a_process_without_sb3_xinet(models, tmp_path):
    """A pruned, dense, folded, layer-gated, layer-removed, gSDE, XiNetTQC and SB3 SAC actor, each as a
    ``torch.export`` program and as ONNX, loaded by a process that has torch and ONNX Runtime only."""
    obs = pendulum_observations(64)
    np.save(tmp_path / "obs.npy", obs)
    arguments = []
    for name in NAMES:
        with warnings.catch_warnings():
            warnings.filterwarnings("error", category=DeprecationWarning, module="sb3_xinet")
            paths = export(models[name], tmp_path / name)
        arguments += [str(paths["exported_program"]), str(paths["onnx"]), str(tmp_path / f"{name}.npy")]
    command = [sys.executable, "-I", "-c", textwrap.dedent(CHECK), str(tmp_path / "obs.npy"), *arguments]
    subprocess.run(command, check=True, cwd=tmp_path)
    for name in NAMES:
        expected, _ = models[name].predict(obs, deterministic=True)
        program_actions, onnx_actions = np.load(tmp_path / f"{name}.npy")
        np.testing.assert_allclose(program_actions, expected, atol=1e-5, err_msg=f"{name}: torch.export")
        np.testing.assert_allclose(onnx_actions, expected, atol=1e-5, err_msg=f"{name}: ONNX")


@needs_cc
@pytest.mark.parametrize("name", NAMES)
def test_the_c_actor_compiles_as_strict_c99_and_matches_predict(models, name, tmp_path):
    """On 300 observations: relative error at most 1e-5 for every action of magnitude 0.1 or more, absolute error
    at most 1e-6 everywhere. Near 0 no float32 program can promise a relative error: SB3's rescaling
    ``low + 0.5 * (tanh(m) + 1) * (high - low)`` cancels there, so one rounding step of torch's own sums (whose
    order C cannot repeat) is ~2e-7 absolute (measured: up to 8e-5 relative for actions of 1e-4)."""
    model = models[name]
    executable = compile_driver(export(model, c=tmp_path)["c_source"].parent)
    obs = pendulum_observations(300)
    expected, _ = model.predict(obs, deterministic=True)
    error = np.abs(c_actions(executable, obs, action_dim=1) - expected)
    assert error.max() <= 1e-6
    large = np.abs(expected) >= 0.1
    assert large.sum() >= 10 and (error[large] / np.abs(expected[large])).max() <= 1e-5


def test_the_c_actor_states_its_sizes_and_allocates_nothing(models, tmp_path):
    model = models["layer_removed"]
    paths = export(model, c=tmp_path)
    header, source = paths["c_header"].read_text(), paths["c_source"].read_text()
    actor = actor_of(model)
    first, second = work_floats(actor, 3)
    features = 3 + sum(layer.linear.out_features for layer in actor.dense)
    assert first == max(features, *(layer.linear.out_features for layer in actor.hidden[1::2]))
    assert "#define XINET_OBS_DIM 3\n" in header and "#define XINET_ACTION_DIM 1\n" in header
    assert f"#define XINET_WORK_FLOATS {first + second}\n" in header
    assert "void xinet_act(const float *obs, float *action);" in header
    assert not any(word in source for word in ("malloc", "calloc", "static float")), "no heap, no mutable state"
    weights = sum(parameter.numel() for parameter in actor.parameters())
    assert source.count("static const float") == 2 * len(actor.dense) + 2 * len(actor.hidden) + 4
    assert f"{weights} weights" in header


def test_the_c_actor_refuses_what_it_cannot_write(models, tmp_path):
    actor = actor_of(models["dense"])
    actor.hidden[0].activation = th.nn.GELU()
    with pytest.raises(ValueError, match="GELU"):
        c_sources(actor, 3)
    with pytest.raises(ValueError, match="C identifier"):
        c_sources(actor_of(models["dense"]), 3, name="my-actor")


def test_the_exported_actor_reads_flat_observations_and_returns_flat_actions(tmp_path):
    """A 2-D Box observation and a 2-D Box action: the exported actor maps the flattened observation to the
    flattened action that ``predict`` returns in the action space's shape."""
    env = SpacesEnv(gym.spaces.Box(-1, 1, (3, 2)), gym.spaces.Box(-2, 2, (2, 2)))
    model = make_model(env).learn(300)
    obs = np.random.default_rng(0).uniform(-1, 1, size=(8, 3, 2)).astype(np.float32)
    program = th.export.load(export(model, tmp_path / "actor", onnx=False)["exported_program"]).module()
    expected, _ = model.predict(obs, deterministic=True)
    actions = program(th.as_tensor(obs.reshape(8, 6))).detach().numpy()
    np.testing.assert_allclose(actions, expected.reshape(8, 4), atol=1e-5)


def test_export_folds_batch_norm_and_keeps_the_pruned_shapes(models):
    model = models["pruned"]
    actor = deterministic_actor(model)
    assert len(actor.dense) == len(model.policy.ofenet.state.layers)
    for exported, layer in zip(actor.dense, model.policy.ofenet.state.layers, strict=True):
        assert exported.linear.weight.shape == layer.linear.weight.shape
    assert not any("bn" in name or "running" in name for name, _ in actor.named_parameters())


def test_load_model_tells_the_saves_apart_and_refuses_others(models, tmp_path):
    models["tqc"].save(tmp_path / "xinet_tqc.zip")
    models["sac"].save(tmp_path / "sac.zip")
    TQC("MlpPolicy", "Pendulum-v1", policy_kwargs=dict(net_arch=[8])).save(tmp_path / "tqc.zip")
    assert type(load_model(tmp_path / "xinet_tqc.zip")) is XiNetTQC
    assert type(load_model(tmp_path / "sac.zip")) is SAC
    assert type(load_model(tmp_path / "tqc.zip")) is TQC
    TD3("MlpPolicy", "Pendulum-v1", policy_kwargs=dict(net_arch=[8])).save(tmp_path / "td3.zip")
    with pytest.raises(ValueError, match="not a XiNetSAC, XiNetTQC, SAC or TQC save"):
        load_model(tmp_path / "td3.zip")


def test_export_command(models, tmp_path):
    model = models["tqc"]
    model.save(tmp_path / "model.zip")
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "-m", "sb3_xinet.export", str(tmp_path / "model.zip"), "--out", str(out / "actor"), "--c", str(out)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert all((out / name).exists() for name in ("actor.pt2", "actor.onnx", "xinet.h", "xinet.c"))
    assert "weights" in result.stdout and "us per observation" in result.stdout and "bytes of stack" in result.stdout
