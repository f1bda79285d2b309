"""How long a training run will take: calibrated from a few real steps, then measured as it runs.

A step's cost depends on the computer, the encoder, the patch and batch size and the device, so
it is measured, never guessed: ``calibrate`` runs a few optimiser steps and one validation pass
of the same configuration and data through the engine itself (random weights, nothing written),
and ``plan_time`` scales them to the planned run. While a run goes on, ``RunClock`` measures
steps and validation passes separately from the engine's progress events (a validation pass can
take longer than the steps between two), so its estimate of the time left stays honest.
The Fine-tune dock shows both; ``madgnet finetune`` prints them (``--estimate`` only calibrates).
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from napari_madgnet.jobs import CancelToken, Progress
from napari_madgnet.training.config import TrainConfig
from napari_madgnet.training.engine import TrainData, iter_train, steps_per_epoch, total_steps


@dataclass(frozen=True)
class StepCosts:
    """Measured costs in seconds: one optimiser step, one validation pass, and the set-up
    (building the network, the first step's warm-up) a run pays once."""

    per_step_s: float
    per_validation_s: float
    setup_s: float = 0.0
    device: str = ""


@dataclass(frozen=True)
class TimeEstimate:
    """How long a run takes in all and how long is left, and what the figures rest on."""

    total_s: float
    remaining_s: float
    steps: int
    validations: int
    costs: StepCosts
    source: str  # "calibration" (before the run) or "measured" (from the run's own steps)

    def describe(self) -> str:
        """E.g. "about 4 min in all (0.9 s per step x 200 steps, 1.2 s per check x 20; measured)"."""
        c = self.costs
        parts = [f"{c.per_step_s:.2g} s per step x {self.steps}"]
        if self.validations:
            parts.append(f"{c.per_validation_s:.2g} s per check x {self.validations}")
        where = f" on {c.device}" if c.device else ""
        how = "measured on this computer" if self.source == "calibration" else "measured so far"
        return f"{format_duration(self.total_s)} in all{where} ({', '.join(parts)}; {how})"


def format_duration(seconds: float) -> str:
    """A duration as people say it: "about 40 s", "about 4 min", "about 1 h 20 min"."""
    s = max(0.0, float(seconds))
    if s < 60:
        return f"about {max(5, 5 * round(s / 5))} s"
    if s < 3600:
        return f"about {max(1, round(s / 60))} min"
    h, m = divmod(round(s / 60), 60)
    return f"about {h} h {m:02d} min"


def count_validations(cfg: TrainConfig, data: TrainData) -> tuple[int, int]:
    """(optimiser steps, validation passes) of a run, as the engine plans them."""
    total = total_steps(cfg, data)
    if not data.val:
        return total, 0
    per_epoch = steps_per_epoch(cfg, data, 1)
    # the engine validates at every epoch end and after the last step
    return total, total // per_epoch + (1 if total % per_epoch else 0)


def plan_time(cfg: TrainConfig, data: TrainData, costs: StepCosts) -> TimeEstimate:
    """The time of the run ``cfg`` on ``data`` at ``costs`` (early stopping may end it sooner)."""
    steps, validations = count_validations(cfg, data)
    total = costs.setup_s + steps * costs.per_step_s + validations * costs.per_validation_s
    return TimeEstimate(total, total, steps, validations, costs, "calibration")


def calibrate(
    cfg: TrainConfig,
    data: TrainData,
    *,
    steps: int = 4,
    cancel: CancelToken | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> StepCosts:
    """Measure ``cfg``'s step and validation costs on ``data``: ``steps`` real optimiser steps
    and one validation pass through ``engine.iter_train`` (random weights of the same encoder, so
    nothing is downloaded or loaded; nothing is written). Takes a few seconds on a CPU.

    The first step is left out of the per-step figure (it allocates and warms up) and counted in
    the set-up. Raises ``jobs.Cancelled`` when ``cancel`` is set before the first step.
    """
    from napari_madgnet.device import resolve_device

    steps = max(2, int(steps))
    probe = cfg.replace(init="scratch", from_model=None, early_stopping=None, warmup_steps=0)
    probe = probe.with_length(steps=steps, validate_every=steps)
    start = clock()
    step_times: list[float] = []
    val_times: list[float] = []
    last = start
    val_start: float | None = None
    gen = iter_train(probe, data, cancel=cancel)
    try:
        while True:
            report = next(gen)
            now = clock()
            if report.details.get("phase") == "validating":
                val_start = now
                continue
            if "step" not in report.details:
                continue
            if val_start is not None:
                step_times.append(val_start - last)
                val_times.append(now - val_start)
                val_start = None
            else:
                step_times.append(now - last)
            last = now
    except StopIteration:
        pass
    if not step_times:
        raise ValueError("The calibration ran no step.")
    steady = step_times[1:] or step_times
    per_step = statistics.median(steady)
    setup = max(0.0, step_times[0] - per_step)
    return StepCosts(per_step, val_times[-1] if val_times else 0.0, setup, str(resolve_device(cfg.device)))


def estimate_run(
    cfg: TrainConfig, data: TrainData, *, steps: int = 4, cancel: CancelToken | None = None
) -> TimeEstimate:
    """``calibrate`` then ``plan_time``: the estimate shown before a run starts."""
    return plan_time(cfg, data, calibrate(cfg, data, steps=steps, cancel=cancel))


class RunClock:
    """The time left in a running training, from its progress events.

    Feed it every ``Progress`` of ``iter_train``/``iter_finetune`` (``update``). Steps and
    validation passes are timed apart (the engine announces each pass with ``phase ==
    "validating"``), so the estimate counts the passes still to come at their own cost. Before
    the first pass its cost comes from ``prior`` (a calibration) when given, else it is left out
    and ``TimeEstimate.validations`` says how many are not yet costed.
    """

    def __init__(
        self,
        validate_every: int | None = None,
        prior: StepCosts | None = None,
        clock: Callable[[], float] = time.perf_counter,
        has_validation: bool = True,
    ) -> None:
        self.validate_every = validate_every
        self.prior = prior
        self.has_validation = has_validation
        self._clock = clock
        self._start = clock()
        self._last: float | None = None
        self._val_start: float | None = None
        self.step_times: list[float] = []
        self.val_times: list[float] = []
        self.estimate: TimeEstimate | None = None

    def update(self, report: Progress) -> TimeEstimate | None:
        """Take one progress event; return the current estimate (None before the first step)."""
        now = self._clock()
        d: dict[str, Any] = report.details
        if d.get("phase") == "validating":
            self._val_start = now
            return self.estimate
        if "step" not in d:
            return self.estimate
        since = now if self._val_start is None else self._val_start
        if self._last is not None:  # the first step also carries the set-up: not a step's cost
            self.step_times.append(since - self._last)
        if self._val_start is not None:
            self.val_times.append(now - self._val_start)
            if self.validate_every is None:
                self.validate_every = int(d["step"])
            self._val_start = None
        self._last = now
        done, total = int(d["step"]), int(d.get("total_steps") or d["step"])
        self.estimate = self._estimate(done, total, now)
        return self.estimate

    def _estimate(self, done: int, total: int, now: float) -> TimeEstimate:
        recent = self.step_times[-20:]
        if recent:
            per_step = statistics.median(recent)
        elif self.prior is not None:
            per_step = self.prior.per_step_s
        else:
            per_step = (now - self._start) / max(done, 1)
        if self.val_times:
            per_val = statistics.median(self.val_times[-5:])
        else:
            per_val = self.prior.per_validation_s if self.prior is not None else 0.0
        every = self.validate_every
        left_vals = 0
        if self.has_validation and every and done < total:
            left_vals = total // every + (1 if total % every else 0) - (done // every)
        remaining = (total - done) * per_step + max(0, left_vals) * per_val
        elapsed = now - self._start
        validations = math.ceil(total / every) if (self.has_validation and every) else 0
        costs = StepCosts(per_step, per_val, 0.0, self.prior.device if self.prior else "")
        return TimeEstimate(elapsed + remaining, remaining, total, validations, costs, "measured")


__all__ = [
    "RunClock",
    "StepCosts",
    "TimeEstimate",
    "calibrate",
    "count_validations",
    "estimate_run",
    "format_duration",
    "plan_time",
]
