"""Export the deterministic actor of a saved XiNetSAC or XiNetTQC model (OFENet state branch + actor) as
TorchScript and ONNX.

The exported network maps a batch of float32 observations to the actions ``model.predict(obs,
deterministic=True)`` returns (squashed by tanh and rescaled to the action space's bounds). Observations and
actions are flat vectors: for spaces other than a 1-D Box, the observation as SB3 preprocesses it (flattened,
one-hot for Discrete / MultiDiscrete) and the action before its reshape to the action space's shape. It is built from
plain torch modules: each BatchNorm (running statistics) is folded into the linear layer before it, and a gate
scales its unit by theta (the deterministic rule), a product left out where every theta is 1. The files run
with torch alone (TorchScript) or with ONNX Runtime alone (ONNX); neither needs SB3 or sb3_xinet.

    python -m sb3_xinet.export logs/xinet_sac/Hopper-v5_1/Hopper-v5.zip --out exported/hopper

writes ``exported/hopper.pt`` and ``exported/hopper.onnx`` and prints their parameter count and
single-observation latency.
"""

import argparse
import statistics
import time
import warnings
from pathlib import Path

import numpy as np
import torch as th
from stable_baselines3.common.save_util import load_from_zip_file
from torch import nn

from sb3_xinet.common.algorithm import XiNetAlgorithm
from sb3_xinet.nets import GatedLayer
from sb3_xinet.ofenet import observation_dim
from sb3_xinet.xinet_sac import XiNetSAC
from sb3_xinet.xinet_tqc import XiNetTQC


class ExportedLayer(nn.Module):
    """``act(linear(x))``, times a per-unit scale when the unit's theta is not 1."""

    def __init__(self, linear: nn.Linear, activation: nn.Module, scale: th.Tensor) -> None:
        super().__init__()
        self.linear = linear
        self.activation = activation
        self.scaled = bool((scale != 1).any())
        self.register_buffer("scale", scale.clone())

    def forward(self, x: th.Tensor) -> th.Tensor:
        h = self.activation(self.linear(x))
        if self.scaled:
            h = h * self.scale
        return h


class DeterministicActor(nn.Module):
    """OFENet's state branch (DenseNet: each layer's output concatenated to its input), the actor's hidden
    layers, the mean head (clipped to ``[-clip_mean, clip_mean]`` with gSDE, as the actor does), tanh, and the
    rescaling to ``[low, high]``."""

    def __init__(
        self,
        dense: list[ExportedLayer],
        hidden: list[ExportedLayer],
        mu: nn.Linear,
        low: th.Tensor,
        high: th.Tensor,
        clip_mean: float = 0.0,
    ) -> None:
        super().__init__()
        self.dense = nn.ModuleList(dense)
        self.hidden = nn.ModuleList(hidden)
        self.mu = mu
        self.clip_mean = clip_mean
        self.register_buffer("low", low)
        self.register_buffer("high", high)

    def forward(self, obs: th.Tensor) -> th.Tensor:
        x = obs
        for layer in self.dense:
            x = th.cat([x, layer(x)], dim=1)
        for layer in self.hidden:
            x = layer(x)
        mean = self.mu(x)
        if self.clip_mean > 0:
            mean = th.clamp(mean, -self.clip_mean, self.clip_mean)
        action = th.tanh(mean)
        return self.low + 0.5 * (action + 1.0) * (self.high - self.low)


def export_layer(layer: GatedLayer) -> ExportedLayer:
    """A plain copy of a gated layer in inference mode: BN folded into the linear layer, theta (times the layer
    gate's) as a scale."""
    weight, bias = layer.linear.weight.detach().clone(), layer.linear.bias.detach().clone()
    if layer.bn is not None:
        bn = layer.bn
        factor = bn.weight.detach() / th.sqrt(bn.running_var + bn.eps)
        weight = weight * factor[:, None]
        bias = (bias - bn.running_mean) * factor + bn.bias.detach()
    linear = nn.Linear(weight.shape[1], weight.shape[0])
    linear.weight.data.copy_(weight)
    linear.bias.data.copy_(bias)
    scale = layer.mean_scale()
    scale = th.ones(weight.shape[0]) if scale is None else scale
    return ExportedLayer(linear, type(layer.activation)(), scale)


def load_model(path: str | Path, device: str = "cpu") -> XiNetAlgorithm:
    """Load a XiNetSAC or XiNetTQC save, whichever it is (told apart by its policy class)."""
    data, _, _ = load_from_zip_file(path, device="cpu", load_data=True)
    policy_class = (data or {}).get("policy_class")
    cls = XiNetTQC if getattr(policy_class, "quantile_critics", False) else XiNetSAC
    return cls.load(path, device=device)


def deterministic_actor(model: XiNetAlgorithm) -> DeterministicActor:
    """The plain-torch deterministic actor of a model, on the CPU, in eval mode."""
    policy = model.policy
    mu = nn.Linear(policy.actor.mu.in_features, policy.actor.mu.out_features)
    mu.load_state_dict(policy.actor.mu.state_dict())
    space = model.action_space
    actor = DeterministicActor(
        [export_layer(layer) for layer in policy.ofenet.state.layers],
        [export_layer(layer) for layer in policy.actor.latent_pi.layers],
        mu,
        th.as_tensor(space.low, dtype=th.float32).flatten(),
        th.as_tensor(space.high, dtype=th.float32).flatten(),
        policy.actor.clip_mean if policy.actor.use_sde else 0.0,
    )
    return actor.cpu().eval()


def export(model: XiNetAlgorithm | str | Path, out: str | Path, onnx: bool = True) -> dict[str, Path]:
    """Write ``<out>.pt`` (TorchScript) and, if ``onnx``, ``<out>.onnx``; return the paths written."""
    if not isinstance(model, XiNetAlgorithm):
        model = load_model(model)
    return save_actor(deterministic_actor(model), observation_dim(model.observation_space), out, onnx)


def save_actor(actor: nn.Module, obs_dim: int, out: str | Path, onnx: bool = True) -> dict[str, Path]:
    """Write a plain-torch actor (observations -> actions) as ``<out>.pt`` and, if ``onnx``, ``<out>.onnx``."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    example = th.zeros(2, obs_dim)
    paths = {"torchscript": out.with_suffix(".pt")}
    with warnings.catch_warnings():
        # deprecated in favour of torch.export, whose files need torch.export.load; TorchScript files load with
        # torch.jit.load in any torch since 1.x and in LibTorch (C++), which is what deployment hosts have
        warnings.simplefilter("ignore", DeprecationWarning)
        th.jit.script(actor).save(str(paths["torchscript"]))
    if onnx:
        paths["onnx"] = out.with_suffix(".onnx")
        th.onnx.export(
            actor,
            (example,),
            str(paths["onnx"]),
            input_names=["observation"],
            output_names=["action"],
            dynamic_shapes={"obs": {0: th.export.Dim("batch")}},
            verbose=False,
        )
    return paths


def latency_us(run, rounds: int = 7, number: int = 200) -> float:
    """Median over rounds of the mean time of ``number`` calls, in microseconds."""
    run()
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(number):
            run()
        times.append((time.perf_counter() - start) / number * 1e6)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="a XiNetSAC or XiNetTQC save (.zip)")
    parser.add_argument("--out", required=True, help="output path without suffix")
    parser.add_argument("--no-onnx", action="store_true", help="TorchScript only")
    args = parser.parse_args()
    model = load_model(args.model)
    paths = export(model, args.out, onnx=not args.no_onnx)
    params = sum(p.numel() for p in deterministic_actor(model).parameters())
    obs = th.zeros(1, observation_dim(model.observation_space))
    scripted = th.jit.load(str(paths["torchscript"]))
    print(f"exported actor: {params:,} parameters (BatchNorm folded)")
    with th.no_grad():
        print(f"  {paths['torchscript']}: {latency_us(lambda: scripted(obs)):.1f} us per observation")
    if "onnx" in paths:
        import onnxruntime

        session = onnxruntime.InferenceSession(str(paths["onnx"]), providers=["CPUExecutionProvider"])
        feed = {"observation": np.zeros((1, obs.shape[1]), dtype=np.float32)}
        print(f"  {paths['onnx']}: {latency_us(lambda: session.run(None, feed)):.1f} us per observation")


if __name__ == "__main__":
    main()
