"""The pruning schedule: when the regularizer is on, when units are removed, when pruning ends.

One object owns the three env-step numbers, their defaults and their validation; the pruning callback asks it
at every env step what happens now (:meth:`PruningSchedule.step`) and the algorithm carries it out.

- before ``start``: nothing (the thetas stay at 1 and do not learn; the networks train whole, the loss scales
  are measured);
- from ``start``: the regularizer is on, and every ``freq`` env steps the units at the threshold are removed;
- at ``end``: the last removal, then the surviving thetas are folded into the weights (the model trains on as
  plain OFENet-SAC or -TQC at its pruned widths).

``None`` means "never": ``start=None`` keeps the regularizer off for good, ``end=None`` never folds.
"""

from dataclasses import dataclass, replace
from enum import Enum
from typing import Any, Literal

from sb3_xinet.common.checks import check_int

# the default start, in env steps after the random warm-up (``learning_starts``): the heads have learned and the
# loss scales are measured first
START_AFTER_WARMUP = 10_000
# the default length of the pruning phase, in env steps (docs/design.md, "Schedule")
PRUNING_STEPS = 80_000
Auto = Literal["auto"]


class Action(Enum):
    """What the schedule asks for at an env step."""

    NOTHING = "nothing"  # the regularizer is off
    REGULARIZE = "regularize"  # the regularizer is on
    REMOVE = "remove"  # on, and the units at the threshold go now
    FOLD = "fold"  # pruning ends now: a last removal, then the gates are folded into the weights

    @property
    def regularizes(self) -> bool:
        return self in (Action.REGULARIZE, Action.REMOVE)


@dataclass
class PruningSchedule:
    """When pruning happens, in env steps (see the module's docstring).

    :param start: env step at which the regularizer and the removals start (None: never)
    :param freq: env steps between two removals
    :param end: env step at which pruning ends and the gates are folded away (None: never); after ``start``
    :param last_removal: env step of the last removal (or of the start of the current ``learn()``), from which
        the next one is counted
    """

    start: int | None
    freq: int
    end: int | None
    last_removal: int = 0

    def __post_init__(self) -> None:
        if self.start is not None:
            self.start = check_int("pruning_start", self.start, 0)
        self.freq = check_int("prune_freq", self.freq, 1)
        if self.end is not None:
            self.end = check_int("pruning_end", self.end, 0)
        if self.start is not None and self.end is not None and self.end <= self.start:
            raise ValueError(f"pruning_end ({self.end}) must come after pruning_start ({self.start})")

    @classmethod
    def from_arguments(
        cls,
        pruning_start: int | Auto | None = "auto",
        prune_freq: int = 1000,
        pruning_end: int | Auto | None = "auto",
        learning_starts: int = 0,
    ) -> "PruningSchedule":
        """The schedule of an algorithm's arguments. ``"auto"``: ``start`` is ``learning_starts`` + 10,000, and
        ``end`` is ``start`` + 80,000 (never when ``start`` is None). A ValueError names a bad argument."""
        for name, value in (("pruning_start", pruning_start), ("pruning_end", pruning_end)):
            if isinstance(value, str) and value != "auto":
                raise ValueError(f"{name} must be an integer, 'auto' or None, got {value!r}")
        if pruning_start == "auto":
            pruning_start = check_int("learning_starts", learning_starts, 0) + START_AFTER_WARMUP
        if pruning_end == "auto":
            pruning_end = None if pruning_start is None else pruning_start + PRUNING_STEPS
        return cls(pruning_start, prune_freq, pruning_end)

    @classmethod
    def from_saved(cls, data: dict[str, Any]) -> "PruningSchedule":
        """The schedule of a save made before it was one object (flat ``pruning_start``, ``prune_freq`` and
        ``pruning_end`` attributes; a save from before pruning had an end gets the default end)."""
        start = data["pruning_start"]
        return cls(start, data["prune_freq"], data.get("pruning_end", start + PRUNING_STEPS))

    def replace(self, **changes: Any) -> "PruningSchedule":
        """A copy with some fields changed (and validated)."""
        return replace(self, **changes)

    def restart(self, num_timesteps: int) -> None:
        """A ``learn()`` starts at ``num_timesteps``: the next removal comes ``freq`` steps later."""
        self.last_removal = num_timesteps

    def regularizing(self, num_timesteps: int) -> bool:
        """Whether the regularizer is on at ``num_timesteps`` (between ``start`` and ``end``)."""
        started = self.start is not None and num_timesteps >= self.start
        return started and not self.reached_end(num_timesteps)

    def reached_end(self, num_timesteps: int) -> bool:
        return self.end is not None and num_timesteps >= self.end

    def step(self, num_timesteps: int, ended: bool) -> Action:
        """What happens at env step ``num_timesteps``, given whether pruning has already ``ended`` (the gates are
        folded); counts a removal when it asks for one."""
        if ended:
            return Action.NOTHING
        if self.reached_end(num_timesteps):
            return Action.FOLD
        if not self.regularizing(num_timesteps):
            return Action.NOTHING
        if num_timesteps - self.last_removal >= self.freq:
            self.last_removal = num_timesteps
            return Action.REMOVE
        return Action.REGULARIZE
