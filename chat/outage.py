"""An outside service that is down, as one process sees it: logged once when it goes and once when it is back,
and not asked again for a few seconds after each failure (the rate limiter's cache, the push bus)."""

from __future__ import annotations

import logging
import threading
import time


class Outage:
    """Shared by this process's threads. ``down`` is logged with the error's type and text; ``up`` with the seconds
    the outage lasted (``%.0f``)."""

    def __init__(self, logger: logging.Logger, down: str, up: str, retry_after_s: float) -> None:
        self.logger, self.down, self.up, self.retry_after_s = logger, down, up, retry_after_s
        self.lock = threading.Lock()
        self.since: float | None = None
        self.retry_at = 0.0

    def skip(self) -> bool:
        """Whether to leave the service alone for now (it failed a moment ago)."""
        return self.since is not None and time.monotonic() < self.retry_at

    def failed(self, exc: BaseException) -> None:
        with self.lock:
            now = time.monotonic()
            self.retry_at = now + self.retry_after_s
            if self.since is None:
                self.since = now
                self.logger.warning(self.down, type(exc).__name__, exc)

    def succeeded(self) -> None:
        if self.since is None:
            return
        with self.lock:
            if self.since is not None:
                self.logger.info(self.up, time.monotonic() - self.since)
                self.since = None
