"""The pruning callback: the regularizer's schedule, the removal of dead units, and their logging."""

from typing import TYPE_CHECKING

from stable_baselines3.common.callbacks import BaseCallback

from sb3_xinet.common.checks import check_int
from sb3_xinet.summary import PruningSummary

if TYPE_CHECKING:
    from sb3_xinet.common.algorithm import XiNetAlgorithm


class XiNetPruningCallback(BaseCallback):
    """Switches the cost-aware regularizer on at ``pruning_start`` and removes, every ``prune_freq`` env steps,
    the units whose theta reached the threshold (from each network, its target copy and its optimizer state).

    The algorithm's ``learn`` attaches one with the model's settings; pass a configured instance as ``callback``
    to override them. Logged through SB3's logger (every ``log_interval`` episodes, like SAC's keys):
    ``xinet/params`` and ``xinet/params_initial`` (OFENet + actor + critics), ``xinet/params_fraction``,
    ``xinet/params/<network>`` and ``xinet/params_initial/<network>``, ``xinet/units/<block>/<layer>``,
    ``xinet/units_removed``, ``xinet/cost_active``, ``xinet/pruning_ended``; the cost term (``xinet/cost_term``)
    and the aux loss (``train/aux_loss``) are logged by the training step.

    :param pruning_start: env step at which the regularizer and pruning start (None: the model's)
    :param prune_freq: env steps between two removals (None: the model's)
    :param verbose: 1 prints every removal
    :param pruning_end: env step at which pruning ends and the gates are folded away (None: the model's)

    ``removals`` lists, for every removal during the callback's runs, the env step and what went (per block,
    per layer id, the units' positions within their layer at that moment), e.g. to follow units over time.
    """

    model: "XiNetAlgorithm"

    def __init__(
        self,
        pruning_start: int | None = None,
        prune_freq: int | None = None,
        verbose: int = 0,
        pruning_end: int | None = None,
    ) -> None:
        super().__init__(verbose)
        for name, value, minimum in (
            ("pruning_start", pruning_start, 0),
            ("prune_freq", prune_freq, 1),
            ("pruning_end", pruning_end, 0),
        ):
            if value is not None:
                check_int(name, value, minimum)
        self._pruning_start = pruning_start
        self._pruning_end = pruning_end
        self._prune_freq = prune_freq
        self._last_prune = 0
        self._summary: PruningSummary | None = None
        self.removals: list[tuple[int, dict[str, dict[int, list[int]]]]] = []

    @property
    def pruning_start(self) -> int:
        return self.model.pruning_start if self._pruning_start is None else self._pruning_start

    @property
    def prune_freq(self) -> int:
        return self.model.prune_freq if self._prune_freq is None else self._prune_freq

    def _init_callback(self) -> None:
        if not hasattr(self.model, "pruning_summary"):
            raise TypeError(
                f"XiNetPruningCallback works with the XiNet algorithms (XiNetSAC, XiNetTQC), not {type(self.model).__name__}"
            )

    def _on_training_start(self) -> None:
        self._last_prune = self.model.num_timesteps
        self._summary = None
        self._update_schedule()

    @property
    def pruning_end(self) -> int:
        return self.model.pruning_end if self._pruning_end is None else self._pruning_end

    def _update_schedule(self) -> None:
        model = self.model
        if not model.pruning_ended and model.num_timesteps >= self.pruning_end:
            model.end_pruning()
            self._summary = None
            if self.verbose >= 1:
                name = type(self.model).__name__
                print(f"{name}: step {self.num_timesteps}, pruning ended; the gates are folded into the weights")
        model.cost_active = not model.pruning_ended and model.cost_weight > 0 and model.num_timesteps >= self.pruning_start

    def _on_step(self) -> bool:
        self._update_schedule()
        if self.model.cost_active and self.num_timesteps - self._last_prune >= self.prune_freq:
            self._last_prune = self.num_timesteps
            self._prune()
        return True

    def _on_rollout_end(self) -> None:
        self._record()

    def _on_training_end(self) -> None:
        if self.model.cost_active:
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
        record("xinet/cost_active", int(self.model.cost_active))
        record("xinet/pruning_ended", int(self.model.pruning_ended))
        for network in summary.networks:
            record(f"xinet/params/{network.name}", network.params)
            record(f"xinet/params_initial/{network.name}", network.initial_params)
            for layer in network.layers:
                record(f"xinet/units/{layer.block}/{layer.layer}", layer.units)
