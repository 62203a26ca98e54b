"""The deterministic actor as dependency-free C99: a header and a source file for targets where neither SB3 nor
torch nor an ONNX runtime can go (microcontrollers, bare-metal controllers, a robot's real-time loop).

The source holds the weights of :class:`~sb3_xinet.export.DeterministicActor` (BatchNorm and thetas already folded
by the export) as ``static const float`` arrays and one function, ``<name>_act(const float *obs, float *action)``:
OFENet's state branch (each layer's output appended to the feature vector, as DenseNet does), the actor's hidden
layers, the mean head, tanh and the rescaling to the action bounds, as ``predict(obs, deterministic=True)`` computes
them. It allocates nothing: its working memory is two arrays on the stack, whose size the header states
(``<NAME>_WORK_FLOATS``). It needs only ``<math.h>`` (``expf``, ``tanhf``). Arithmetic is single precision, as on
an FPU-only microcontroller; outputs match torch's to float32 rounding.

No library writes this: ONNX-to-C compilers exist (e.g. onnx2c), but they are a separate tool chain and do not
know the actor's folded structure; the actor is a handful of dense layers, whose C is short enough to write here.
"""

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import torch as th
from torch import nn

from sb3_xinet.plain_actor import DeterministicActor, ExportedLayer

# activation module -> the C expression of it applied to ``v`` (a float)
ACTIVATIONS = {
    nn.ReLU: "v > 0.0f ? v : 0.0f",
    nn.SiLU: "v / (1.0f + expf(-v))",
    nn.Tanh: "tanhf(v)",
    nn.Identity: "v",
}


def c_float(value: float) -> str:
    """A float32 as a C literal that reads back to the same float (9 significant digits)."""
    text = f"{float(np.float32(value)):.9g}"
    if "inf" in text:
        return text.replace("inf", "INFINITY")
    return f"{text}f" if "." in text or "e" in text else f"{text}.0f"


def c_array(name: str, values: th.Tensor) -> str:
    """A ``static const float`` array, eight values a line."""
    flat = values.detach().cpu().to(th.float32).flatten().tolist()
    lines = [", ".join(c_float(value) for value in flat[i : i + 8]) for i in range(0, len(flat), 8)]
    body = ",\n    ".join(lines)
    return f"static const float {name}[{len(flat)}] = {{\n    {body}\n}};\n"


def activation_code(module: nn.Module) -> str:
    """The C expression of a layer's activation, or a ValueError naming the ones the C actor knows."""
    if type(module) not in ACTIVATIONS:
        known = ", ".join(cls.__name__ for cls in ACTIVATIONS)
        raise ValueError(f"the C actor cannot write the activation {type(module).__name__} (it knows {known})")
    return ACTIVATIONS[type(module)]


def layer_code(prefix: str, index: int, layer: ExportedLayer) -> tuple[str, str]:
    """The arrays and the inline function of one hidden layer: ``y = act(W x + b) * scale``."""
    linear = layer.linear
    name = f"{prefix}{index}"
    arrays = c_array(f"{name}_w", linear.weight) + c_array(f"{name}_b", linear.bias)
    scaled = ""
    if layer.scaled:
        arrays += c_array(f"{name}_s", layer.scale)
        scaled = f" * {name}_s[i]"
    function = f"""static void {name}(const float *x, float *y)
{{
    for (int i = 0; i < {linear.out_features}; ++i) {{
        const float *w = {name}_w + i * {linear.in_features};
        float v = {name}_b[i];
        for (int j = 0; j < {linear.in_features}; ++j) {{
            v += w[j] * x[j];
        }}
        y[i] = ({activation_code(layer.activation)}){scaled};
    }}
}}
"""
    return arrays, function


def work_floats(actor: DeterministicActor, obs_dim: int) -> tuple[int, int]:
    """The sizes of the two working arrays: the features (the observation and OFENet's outputs appended to it,
    then reused for the odd hidden layers) and the buffer for the even ones."""
    features = obs_dim + sum(layer.linear.out_features for layer in actor.dense)
    widths = [layer.linear.out_features for layer in actor.hidden]
    odd = max(widths[1::2], default=0)
    return max(features, odd), max(widths[0::2], default=0)


def c_sources(actor: DeterministicActor, obs_dim: int, name: str = "xinet") -> tuple[str, str]:
    """The header and the source of the actor's C function ``<name>_act``."""
    if not name.isidentifier():
        raise ValueError(f"name must be a C identifier, got {name!r}")
    macro = name.upper()
    action_dim = actor.mu.out_features
    first, second = work_floats(actor, obs_dim)
    arrays, functions = [], []
    for prefix, layers in (("dense", actor.dense), ("hidden", actor.hidden)):
        for index, layer in enumerate(layers):
            array, function = layer_code(f"{name}_{prefix}", index, layer)
            arrays.append(array)
            functions.append(function)
    mu = ExportedLayer(actor.mu, nn.Identity(), th.ones(action_dim))
    array, function = layer_code(f"{name}_mu", 0, mu)
    arrays += [array, c_array(f"{name}_low", actor.low), c_array(f"{name}_high", actor.high)]
    functions.append(function)
    params = sum(parameter.numel() for parameter in actor.parameters())
    header = f"""/* Deterministic actor written by sb3_xinet.export: {params} weights, single precision, no heap. */
#ifndef {macro}_ACTOR_H
#define {macro}_ACTOR_H

#define {macro}_OBS_DIM {obs_dim}
#define {macro}_ACTION_DIM {action_dim}
/* the largest working memory of one call: two float arrays on the stack */
#define {macro}_WORK_FLOATS {first + second}

/* obs: {macro}_OBS_DIM floats (flattened, as SB3 preprocesses them); action: {macro}_ACTION_DIM floats,
   the action predict(obs, deterministic=True) returns, within the action space's bounds */
void {name}_act(const float *obs, float *action);

#endif
"""
    body = [f"    float features[{max(first, 1)}];", f"    float buffer[{max(second, 1)}];"]
    body.append(f"    for (int i = 0; i < {obs_dim}; ++i) {{\n        features[i] = obs[i];\n    }}")
    width = obs_dim
    for index, layer in enumerate(actor.dense):
        body.append(f"    {name}_dense{index}(features, features + {width});")
        width += layer.linear.out_features
    source, target = "features", "buffer"
    for index in range(len(actor.hidden)):
        body.append(f"    {name}_hidden{index}({source}, {target});")
        source, target = target, source
    body.append(f"    {name}_mu0({source}, action);")
    clip = ""
    if actor.clip_mean > 0:
        bound = c_float(actor.clip_mean)
        clip = f"        m = m < -{bound} ? -{bound} : (m > {bound} ? {bound} : m);\n"
    body.append(
        f"    for (int i = 0; i < {action_dim}; ++i) {{\n        float m = action[i];\n{clip}"
        f"        action[i] = {name}_low[i] + 0.5f * (tanhf(m) + 1.0f) * ({name}_high[i] - {name}_low[i]);\n    }}"
    )
    act = f"void {name}_act(const float *obs, float *action)\n{{\n" + "\n".join(body) + "\n}\n"
    includes = f'#include <math.h>\n\n#include "{name}.h"\n\n'
    return header, includes + "\n".join(arrays) + "\n" + "\n".join(functions) + "\n" + act


def write_c(actor: DeterministicActor, obs_dim: int, out: str | Path, name: str = "xinet") -> dict[str, Path]:
    """Write ``<out>/<name>.h`` and ``<out>/<name>.c``; return their paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    header, source = c_sources(actor, obs_dim, name)
    paths = {"c_header": out / f"{name}.h", "c_source": out / f"{name}.c"}
    paths["c_header"].write_text(header)
    paths["c_source"].write_text(source)
    return paths


# A command-line driver for checking and timing the C actor: float32 observations on stdin, actions on stdout;
# with an argument N, the nanoseconds per call of N calls on the first observation instead.
DRIVER = """#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "{name}.h"

int main(int argc, char **argv)
{{
    float obs[{macro}_OBS_DIM], action[{macro}_ACTION_DIM];
    if (argc > 1) {{
        long calls = atol(argv[1]);
        struct timespec start, end;
        if (fread(obs, sizeof(float), {macro}_OBS_DIM, stdin) != {macro}_OBS_DIM) return 1;
        clock_gettime(CLOCK_MONOTONIC, &start);
        for (long i = 0; i < calls; ++i) {{
            obs[0] += 1e-30f;  /* a changing input: the calls cannot be hoisted out of the loop */
            {name}_act(obs, action);
        }}
        clock_gettime(CLOCK_MONOTONIC, &end);
        printf("%.1f %g\\n", ((end.tv_sec - start.tv_sec) * 1e9 + (end.tv_nsec - start.tv_nsec)) / calls, action[0]);
        return 0;
    }}
    while (fread(obs, sizeof(float), {macro}_OBS_DIM, stdin) == {macro}_OBS_DIM) {{
        {name}_act(obs, action);
        fwrite(action, sizeof(float), {macro}_ACTION_DIM, stdout);
    }}
    return 0;
}}
"""


def c_compiler() -> str | None:
    """The system C compiler: ``$CC``, else ``cc``, ``gcc`` or ``clang`` on the PATH; None if there is none."""
    candidates = [os.environ["CC"]] if os.environ.get("CC") else ["cc", "gcc", "clang"]
    return next((path for path in map(shutil.which, candidates) if path), None)


def compile_driver(folder: str | Path, name: str = "xinet", flags: tuple[str, ...] = ("-O2",)) -> Path:
    """Compile the C actor in ``folder`` with :data:`DRIVER` into ``folder/<name>_driver`` (strict C99, every
    warning an error); a RuntimeError if there is no C compiler or it fails."""
    folder = Path(folder)
    compiler = c_compiler()
    if compiler is None:
        raise RuntimeError("no C compiler found (set CC, or install cc, gcc or clang)")
    driver = folder / f"{name}_driver.c"
    driver.write_text(DRIVER.format(name=name, macro=name.upper()))
    executable = folder / f"{name}_driver"
    strict = ["-std=c99", "-D_POSIX_C_SOURCE=199309L", "-Wall", "-Wextra", "-pedantic", "-Werror"]
    command = [compiler, *strict, *flags, str(folder / f"{name}.c"), str(driver), "-o", str(executable), "-lm"]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{result.stderr}")
    return executable


def c_actions(executable: str | Path, obs: np.ndarray, action_dim: int) -> np.ndarray:
    """The actions a compiled driver returns for a batch of flat observations."""
    data = np.ascontiguousarray(obs, dtype=np.float32).tobytes()
    output = subprocess.run([str(executable)], input=data, capture_output=True, check=True).stdout
    return np.frombuffer(output, dtype=np.float32).reshape(len(obs), action_dim)
