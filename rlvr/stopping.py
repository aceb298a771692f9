"""Why a run stops before ``train.steps``, besides a crash (rlvr/recovery.py) or NaNs
(rlvr/guard.py).

* A signal (Ctrl-C, SIGTERM): :class:`StopSignals` records it; the loop finishes the current
  step, writes a checkpoint and stops (``resume=true`` continues). A second signal stops now.
* Rewards failing: :func:`reward_failure_stop` turns this step's ``reward/<name>/failure_rate``
  metrics into a reason to stop when the worst rate is above
  ``reward_runner.stop_failure_rate`` (a warning above 50 % when no threshold is set).
"""

from __future__ import annotations

import logging
import signal
from typing import Any

log = logging.getLogger("rlvr")


class StopSignals:
    """Installs SIGINT / SIGTERM handlers that set :attr:`requested` (first signal) or raise
    ``KeyboardInterrupt`` (second); :meth:`restore` puts the previous handlers back. Outside
    the main thread nothing is installed."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, Any] = {}

    def install(self) -> None:
        previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            for s in previous:
                signal.signal(s, self.request)
        except ValueError:  # not the main thread: no signal handling
            return
        self._previous = previous

    def request(self, signum: int, frame: Any) -> None:
        if self.requested:  # second signal: stop now
            raise KeyboardInterrupt
        self.requested = True
        log.warning("signal %d: finishing this step, writing a checkpoint, then stopping", signum)

    def restore(self) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous = {}


def reward_failure_stop(
    metrics: dict[str, float], threshold: float | None, step: int
) -> str | None:
    """The reason to stop when a reward failed or timed out on more than ``threshold`` of this
    step's calls (None: go on; a warning when the worst rate is above 50 % or the threshold
    is not crossed)."""
    rates = {
        k.split("/")[1]: v
        for k, v in metrics.items()
        if k.startswith("reward/") and k.endswith("/failure_rate")
    }
    worst = max(rates.items(), key=lambda kv: kv[1], default=None)
    if worst is None or worst[1] <= 0.5 and threshold is None:
        return None
    if threshold is None or worst[1] <= threshold:
        log.warning(
            "reward %s failed or timed out on %.0f %% of this step's calls",
            worst[0],
            100 * worst[1],
        )
        return None
    return (
        f"reward {worst[0]!r} failed or timed out on {100 * worst[1]:.0f} % of step "
        f"{step}'s calls (reward_runner.stop_failure_rate={threshold}); checkpoint kept"
    )
