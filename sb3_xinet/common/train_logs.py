"""The training step's logged losses, kept on the device until they are read in one host synchronisation."""

import torch as th
from stable_baselines3.common.logger import Logger

# the logged keys of each collected value (``ent_coef_loss`` only when the coefficient is learned)
KEYS = {
    "ent_coef": "train/ent_coef",
    "ent_coef_loss": "train/ent_coef_loss",
    "actor": "train/actor_loss",
    "critic": "train/critic_loss",
    "aux": "train/aux_loss",
}


class PendingLogs:
    """The losses of the gradient steps since the last :meth:`flush`, as tensors on the device.

    On the CPU, where reading a value costs nothing, the algorithm flushes after every ``train()`` call; on a GPU
    every ``FLUSH_STEPS`` gradient steps and before each log dump, save and the end of ``learn()``, so that the
    training step never waits for the device.
    """

    def __init__(self) -> None:
        self.values: dict[str, list[th.Tensor]] = {name: [] for name in KEYS}

    def append(self, name: str, value: th.Tensor) -> None:
        self.values[name].append(value)

    def last(self, name: str) -> th.Tensor:
        return self.values[name][-1]

    def __len__(self) -> int:
        """Gradient steps collected."""
        return len(self.values["critic"])

    @property
    def empty(self) -> bool:
        return not any(self.values.values())

    def flush(self, logger: Logger) -> None:
        """Record the mean of each loss since the last flush (SB3's ``train/*`` keys) and start afresh."""
        names = [name for name, values in self.values.items() if values]
        means = th.stack([th.stack(self.values[name]).float().mean() for name in names])
        for name, value in zip(names, means.tolist(), strict=True):
            logger.record(KEYS[name], value)
        self.values = {name: [] for name in KEYS}
