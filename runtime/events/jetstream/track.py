"""What one JetStream consumer has waiting, kept in memory between reads of its info (pure).

`pending` and `backlog` are read on every autoscaler tick, so they cannot
ask the server. A `Track` holds the consumer's counts as last read
(`num_pending`: never delivered; `num_ack_pending`: delivered and not
acknowledged, which is leased by some gateway or put back with a delay)
plus what this gateway did since. A read in flight does not lose what
happens meanwhile: changes made before the request was sent are set aside
(`begin_refresh`) and dropped when the answer, which includes them,
arrives; changes made after are kept on top of it.

JetStream does not say when a message put back with a delay falls due,
so the track remembers the due times of what this gateway put back, and
after a short fetch (the server had nothing more to give) it keeps the
consumer quiet for a poll interval, so a worker asking "what is due?"
never spins on work another gateway holds.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class Track:
    undelivered: int = 0
    unacked: int = 0
    _new_undelivered: int = 0
    _new_unacked: int = 0
    _old_undelivered: int = 0
    _old_unacked: int = 0
    retries: dict[int, float] = field(default_factory=dict)
    """Stream sequence -> due time, of deliveries this gateway put back."""
    held: int = 0
    """Deliveries leased by this gateway."""
    quiet_until: float = 0.0

    def change(self, undelivered: int = 0, unacked: int = 0) -> None:
        self._new_undelivered += undelivered
        self._new_unacked += unacked

    def begin_refresh(self) -> None:
        self._old_undelivered += self._new_undelivered
        self._old_unacked += self._new_unacked
        self._new_undelivered = self._new_unacked = 0

    def end_refresh(self, undelivered: int, unacked: int) -> None:
        self.undelivered, self.unacked = undelivered, unacked
        self._old_undelivered = self._old_unacked = 0

    def abort_refresh(self) -> None:
        self._new_undelivered += self._old_undelivered
        self._new_unacked += self._old_unacked
        self._old_undelivered = self._old_unacked = 0

    def waiting(self) -> int:
        """Never delivered: due now."""
        return max(0, self.undelivered + self._old_undelivered + self._new_undelivered)

    def in_flight(self) -> int:
        """Delivered and not acknowledged, by any gateway."""
        return max(0, self.unacked + self._old_unacked + self._new_unacked)

    def pending(self, now: float) -> int:
        return self.waiting() + sum(1 for due_at in self.retries.values() if due_at <= now)

    def stored(self) -> int:
        return self.waiting() + self.in_flight()

    def next_due(self) -> float | None:
        """When a fetch may find something: now (0.0) unless quiet, or a retry's due time."""
        times: list[float] = []
        if self.waiting() or self.in_flight() > self.held + len(self.retries):
            times.append(self.quiet_until)  # undelivered, or another gateway's may come back
        if self.retries:
            times.append(max(min(self.retries.values()), self.quiet_until))
        return min(times) if times else None

    def fetched(self, asked: int, got: int, now: float, poll: float, skew: float) -> None:
        """After a fetch: a short one means nothing else is due, for a poll interval.

        Retries this gateway put back that were due well before the fetch
        and did not come back were taken by another gateway: forgotten.
        """
        if got >= asked:
            self.quiet_until = 0.0
            return
        self.quiet_until = now + poll
        self.retries = {seq: due for seq, due in self.retries.items() if due > now - skew}
