"""The Fine-tune dock's time estimate: calibrated before Start, measured while training runs.

The figures come from the core (``training.estimate``): ``calibrate`` runs a few real steps and
one validation pass of the dock's settings on the chosen layers in a worker thread, a second or
ten after the settings stop changing; ``plan_time`` scales them to the planned length at once when
only the length changes; during a run ``RunClock`` measures the run's own steps and validation
passes. ``madgnet finetune --estimate`` and the CLI's printed estimate use the same functions.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from qtpy.QtCore import QObject, QTimer

from napari_madgnet.jobs import Progress
from napari_madgnet.training.estimate import RunClock, format_duration, plan_time
from napari_madgnet.widgets._ui import LEVEL_COLOURS, ElidedLabel
from napari_madgnet.widgets._worker import Job


def _calibration_job(token: Any, image: Any, labels: Any, cfg: Any, axes: str, name: str):
    """Worker body: the layers checked and split as for training, then a short calibration."""
    from napari_madgnet.training.estimate import calibrate
    from napari_madgnet.training.finetune import data_from_arrays

    yield Progress(0.0, "Measuring how long a step takes...")
    data = data_from_arrays(image, labels, cfg, axes=axes, name=name)
    return data, calibrate(cfg, data, steps=3, cancel=token)


class TimeEstimator(QObject):
    """Owns the estimate label, the calibration worker and its cache, and the run's clock.

    ``schedule(key, args_fn)``: calibrate for ``key`` (the settings a step's cost depends on)
    after ``delay_ms`` unless cached; ``args_fn()`` gives (image, labels, cfg, axes, name) then.
    ``show_plan(cfg)``: the estimate of ``cfg`` from the cached costs, at once.
    """

    def __init__(self, label: ElidedLabel, delay_ms: int | None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.label = label
        self.delay_ms = delay_ms
        self.job: Job | None = None
        self.costs: dict[Any, tuple[Any, Any]] = {}  # key -> (TrainData, StepCosts)
        self.clock: RunClock | None = None
        self.current: Any = None  # the latest TimeEstimate shown
        self._key: Any = None
        self._args_fn: Callable[[], tuple] | None = None
        self._cfg: Any = None
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(self._calibrate)

    # ------------------------------------------------------------------ before Start
    def schedule(self, key: Any, args_fn: Callable[[], tuple], cfg: Any) -> None:
        """Show the estimate for ``cfg``; calibrate first when ``key`` has not been measured."""
        self._key, self._args_fn, self._cfg = key, args_fn, cfg
        if key in self.costs:
            self.show_plan(cfg)
            return
        if self.delay_ms is None:
            self._say("The time is measured from the first steps once training starts.", "info")
            return
        self._say("Measuring how long a step takes on this computer...", "info")
        self._timer.start(self.delay_ms)

    def show_plan(self, cfg: Any) -> None:
        cached = self.costs.get(self._key)
        if cached is None:
            return
        data, costs = cached
        try:
            self.current = plan_time(cfg, data, costs)
        except Exception as exc:  # a setting the planner cannot use: the core says which
            self._say(str(exc), "warning")
            return
        self._say(f"{format_duration(self.current.total_s).capitalize()} on this computer", "info")
        self.label.setToolTip(self.current.describe())

    def _calibrate(self) -> None:
        if self._args_fn is None or (self.job is not None and self.job.running):
            return
        key = self._key
        try:
            args = self._args_fn()
        except Exception as exc:  # e.g. settings out of range: shown where the estimate would be
            self._say(str(exc), "warning")
            return
        self.job = Job(
            _calibration_job,
            *args,
            description="Measuring the training time",
            on_done=lambda result, key=key: self._on_calibrated(key, result),
            on_error=lambda exc: self._say(f"No estimate: {exc}", "warning"),
        )
        self.job.start()

    def _on_calibrated(self, key: Any, result: Any) -> None:
        if self.job is not None and self.job.token.cancelled:
            return
        self.costs[key] = result
        if key == self._key and self._cfg is not None:
            self.show_plan(self._cfg)
        elif self._args_fn is not None:
            self._timer.start(self.delay_ms or 0)  # the settings moved on meanwhile

    def cancel(self) -> None:
        """Stop a pending or running calibration (Start needs the CPU)."""
        self._timer.stop()
        if self.job is not None and self.job.running:
            self.job.cancel()

    # ------------------------------------------------------------------ while training
    def start_run(self, cfg: Any) -> None:
        cached = self.costs.get(self._key)
        prior = cached[1] if cached is not None else None
        self.cancel()
        self.clock = RunClock(
            validate_every=cfg.steps_per_epoch, prior=prior, has_validation=cfg.val_fraction > 0
        )

    def update_run(self, report: Progress) -> Any:
        """Feed a progress event of the run; returns the current estimate (or None)."""
        if self.clock is None:
            return None
        estimate = self.clock.update(report)
        if estimate is not None:
            self.current = estimate
            self._say(f"{format_duration(estimate.remaining_s).capitalize()} left", "info")
            self.label.setToolTip(estimate.describe())
        return estimate

    def end_run(self) -> None:
        if self.clock is not None and self.current is not None:
            self._say(f"Took {format_duration(self.current.total_s).removeprefix('about ')}", "info")
        self.clock = None

    def _say(self, text: str, level: str) -> None:
        self.label.setText(text)
        self.label.setStyleSheet(LEVEL_COLOURS.get(level, ""))
