"""The pruning callback: it asks the pruning schedule what happens at each env step, has the algorithm do it
(regularize, remove, fold), and logs what is left."""

from typing import Any, Protocol, runtime_checkable

from stable_baselines3.common.callbacks import BaseCallback, CallbackList, ConvertCallback
from stable_baselines3.common.type_aliases import MaybeCallback

from sb3_xinet.schedule import Action, PruningSchedule
from sb3_xinet.summary import PruningSummary

PARALLEL_TRAINING = (
    "XiNet algorithms do not support rl_zoo3's ParallelTrainCallback: it trains a copy of the model in another "
    "thread and copies its weights back, and pruning changes the networks' shapes while they train."
)


@runtime_checkable
class Prunable(Protocol):
    """What the callback needs of an algorithm (the XiNet algorithms): its schedule and regularizer, and the
    removal, the end of pruning and the summary."""

    pruning_schedule: PruningSchedule
    regularizer: Any
    pruning_ended: bool

    def prune(self) -> dict[str, dict[int, list[int]]]: ...

    def end_pruning(self) -> None: ...

    def pruning_summary(self) -> PruningSummary: ...


class XiNetPruningCallback(BaseCallback):
    """Switches the cost-aware regularizer on and off, removes the units whose theta reached the threshold and
    ends pruning, when the model's pruning schedule (``model.pruning_schedule``) says so.

    The algorithm's ``learn`` attaches one; pass one as ``callback`` to print every removal (``verbose=1``) or to
    read ``removals`` afterwards. Logged through SB3's logger (every ``log_interval`` episodes, like SAC's keys):
    ``xinet/params`` and ``xinet/params_initial`` (OFENet + actor + critics), ``xinet/params_fraction``,
    ``xinet/params/<network>`` and ``xinet/params_initial/<network>``, ``xinet/units/<block>/<layer>``,
    ``xinet/units_removed``, ``xinet/cost_active``, ``xinet/pruning_ended``; the cost term (``xinet/cost_term``)
    and the aux loss (``train/aux_loss``) are logged by the training step.

    :param verbose: 1 prints every removal and the end of pruning

    ``removals`` lists, for every removal during the callback's runs, the env step and what went (per block,
    per layer id, the units' positions within their layer at that moment), e.g. to follow units over time.
    """

    model: Any  # a Prunable algorithm (checked when the callback starts)

    def __init__(self, verbose: int = 0) -> None:
        super().__init__(verbose)
        self._summary: PruningSummary | None = None
        self.removals: list[tuple[int, dict[str, dict[int, list[int]]]]] = []

    def _init_callback(self) -> None:
        if not isinstance(self.model, Prunable):
            raise TypeError(
                f"XiNetPruningCallback works with the XiNet algorithms (XiNetSAC, XiNetTQC), not {type(self.model).__name__}"
            )

    def _on_training_start(self) -> None:
        self.model.pruning_schedule.restart(self.num_timesteps)
        self._summary = None
        self._act()

    def _on_step(self) -> bool:
        self._act()
        return True

    def _act(self) -> None:
        """Do what the schedule asks for now."""
        model = self.model
        action = model.pruning_schedule.step(self.num_timesteps, model.pruning_ended)
        if action is Action.FOLD:
            model.end_pruning()
            self._summary = None
            if self.verbose >= 1:
                print(
                    f"{type(model).__name__}: step {self.num_timesteps}, pruning ended; the gates are folded into the weights"
                )
        model.regularizer.switch(action.regularizes)
        if action is Action.REMOVE and model.regularizer.active:
            self._prune()

    def _on_rollout_end(self) -> None:
        self._record()

    def _on_training_end(self) -> None:
        if self.model.regularizer.active:  # what reached the threshold since the last removal goes before a save
            self._prune()
        self._record()

    def _prune(self) -> None:
        removed = self.model.prune()
        if not removed:
            return
        self.removals.append((self.num_timesteps, removed))
        self._summary = None
        if self.verbose >= 1:
            count = sum(len(units) for layers in removed.values() for units in layers.values())
            summary = self.model.pruning_summary()
            print(
                f"{type(self.model).__name__}: step {self.num_timesteps}, removed {count} units; "
                f"{summary.params:,} of {summary.initial_params:,} parameters left ({summary.params_fraction:.1%})"
            )

    def _record(self) -> None:
        if self._summary is None:  # recomputed only when units were removed
            self._summary = self.model.pruning_summary()
        summary = self._summary
        record = self.logger.record
        record("xinet/params", summary.params)
        record("xinet/params_initial", summary.initial_params)
        record("xinet/params_fraction", summary.params_fraction)
        record("xinet/units_removed", summary.initial_units - summary.units)
        record("xinet/cost_active", int(self.model.regularizer.active))
        record("xinet/pruning_ended", int(self.model.pruning_ended))
        for network in summary.networks:
            record(f"xinet/params/{network.name}", network.params)
            record(f"xinet/params_initial/{network.name}", network.initial_params)
            for layer in network.layers:
                record(f"xinet/units/{layer.block}/{layer.layer}", layer.units)


def with_pruning_callback(callback: MaybeCallback) -> MaybeCallback:
    """The user's callback(s) (plain functions wrapped as SB3 does), plus a default :class:`XiNetPruningCallback`
    unless one of them, at any depth of a :class:`CallbackList`, is one.

    :raises ValueError: for the RL Zoo's ``ParallelTrainCallback``, which trains a copy of the model loaded as a
        plain SAC in another thread: pruning either copy would change the shapes the other one syncs.
    """

    def flat(item: MaybeCallback) -> list[BaseCallback]:
        if item is None:
            return []
        if isinstance(item, list):
            return [leaf for sub in item for leaf in flat(sub)]
        if isinstance(item, CallbackList):
            return flat(item.callbacks)
        return [item if isinstance(item, BaseCallback) else ConvertCallback(item)]

    callbacks = flat(callback)
    for item in callbacks:
        if type(item).__name__ == "ParallelTrainCallback":
            raise ValueError(PARALLEL_TRAINING)
    if any(isinstance(item, XiNetPruningCallback) for item in callbacks):
        return callback
    # the user's callback objects stay as given (a CallbackList keeps seeing the rollout's locals, as in SB3)
    given = callback if isinstance(callback, list) else [] if callback is None else [callback]
    return [item if isinstance(item, BaseCallback) else ConvertCallback(item) for item in given] + [XiNetPruningCallback()]
