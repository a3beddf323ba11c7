"""A lean pool of threads for synchronous handlers.

Leaner than ThreadPoolExecutor on the hot path (no Future, Condition or work item per
call: a job is one callable), and its threads are daemons, because a handler that ran
past its timeout cannot be killed and must not hold the process open at exit.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable

from .json_log import log


class Workers:
    """Runs jobs on up to `size` threads, started on demand."""

    def __init__(self, size: int, name: str = "handler") -> None:
        self._size = size
        self._name = name
        self._jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._idle = threading.Semaphore(0)  # one permit per thread waiting for a job
        self._threads: list[threading.Thread] = []

    def submit(self, job: Callable[[], None]) -> None:
        """Queue `job`, starting a thread for it unless one is idle."""
        self._jobs.put(job)
        if not self._idle.acquire(blocking=False) and len(self._threads) < self._size:
            thread = threading.Thread(
                target=self._work, name=f"{self._name}-{len(self._threads) + 1}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        """Let every thread exit once the jobs queued before this call are done."""
        for _ in self._threads:
            self._jobs.put(None)

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            try:
                job()
            except BaseException:  # a bug in the job itself, not in the user's handler
                log.exception("worker job failed")
            self._idle.release()
