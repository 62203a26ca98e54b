"""How well the time cost model predicts the training step: calibrate on some random shapes, then compare its
predictions with measured step times on other random shapes (held out).

Reports Spearman's rank correlation and the relative errors, and writes a markdown table::

    python -m benchmarks.time_model --env Hopper-v5 --fit-shapes 8 --test-shapes 12 --out benchmarks/results/time_model
"""

import argparse
import json
import platform
from pathlib import Path

import numpy as np
import torch as th

from benchmarks.common import spearman
from sb3_xinet import XiNetSAC
from sb3_xinet.calibration import anchor, fit, measure
from sb3_xinet.time_cost import TimeCalibration


def validate(env_id: str, fit_shapes: int, test_shapes: int, device: str, seed: int = 0) -> dict:
    """Fit on ``fit_shapes`` shapes (seed ``seed``), predict ``test_shapes`` others (seed ``seed + 1``)."""
    model = XiNetSAC("MlpPolicy", env_id, cost_weight=0.0, device=device)
    features, times = measure(model, fit_shapes, seed)
    coef = anchor(fit(features, times), features, times)  # as calibrate() does
    held_features, held_times = measure(model, test_shapes, seed + 1)
    held_features, held_times = held_features[1:], held_times[1:]  # the first shape (unpruned) was in the fit
    predicted = held_features @ coef
    errors = np.abs(predicted - held_times) / held_times
    return {
        "env": env_id,
        "device": str(model.device),
        "coefficients": TimeCalibration(*coef.tolist(), batch_size=model.batch_size, device=str(model.device)).to_dict(),
        "spearman": spearman(predicted, held_times),
        "median_relative_error": float(np.median(errors)),
        "max_relative_error": float(errors.max()),
        "measured_ms": (1000 * held_times).round(2).tolist(),
        "predicted_ms": (1000 * predicted).round(2).tolist(),
    }


def to_markdown(result: dict, command: str) -> str:
    lines = [
        f"# Time model on {result['env']} ({result['device']}, {platform.processor() or platform.machine()})",
        "",
        f"`{command}`",
        "",
        f"Spearman rank correlation {result['spearman']:.3f}; relative error median {result['median_relative_error']:.1%}, "
        f"max {result['max_relative_error']:.1%} (held-out shapes).",
        "",
        "| shape | measured ms/step | predicted ms/step |",
        "|---:|---:|---:|",
    ]
    for index, (measured, predicted) in enumerate(zip(result["measured_ms"], result["predicted_ms"], strict=True)):
        lines.append(f"| {index + 1} | {measured:.2f} | {predicted:.2f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="Hopper-v5")
    parser.add_argument("--fit-shapes", type=int, default=8)
    parser.add_argument("--test-shapes", type=int, default=12)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None, help="write <out>.json and <out>.md")
    args = parser.parse_args()
    th.set_num_threads(args.threads)
    result = validate(args.env, args.fit_shapes, args.test_shapes + 1, args.device)
    command = "python -m benchmarks.time_model " + " ".join(
        f"--{key.replace('_', '-')} {value}" for key, value in vars(args).items() if value is not None
    )
    print(to_markdown(result, command))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.with_suffix(".json").write_text(json.dumps(result, indent=2))
        args.out.with_suffix(".md").write_text(to_markdown(result, command))


if __name__ == "__main__":
    main()
