"""Settings of short runs that prune a clear share of their units within a few hundred env steps on Pendulum-v1:
small networks, fast thetas and a high cost weight. The test suite and ``benchmarks/cuda_check.py`` run them;
they check mechanics (removal, the fold, save and load), not learning."""

from typing import Any

SHORT_PRUNING: dict[str, Any] = dict(
    learning_starts=100,
    ofenet_pretrain_steps=50,
    batch_size=32,
    pruning_start=150,
    prune_freq=25,
    cost_weight=20.0,
    loss_scale_window=100,
    policy_kwargs=dict(
        net_arch=[32, 32],
        ofenet_kwargs=dict(state_units=[8, 8, 8], state_action_units=[8, 8, 8]),
        theta_learning_rate=0.05,
    ),
    seed=0,
)
