"""An event consumer: every order event, once it is stored, at least once.

Publish with `faas publish orders.created '{"id": 42}'` or
`curl -X POST http://127.0.0.1:8080/events/orders.created -d '{"id": 42}'
-H 'Content-Type: application/json'`; the gateway answers 202 with the
event id and retries this handler (with backoff) until it returns.
Deliveries can repeat, so act on `event.event_id` idempotently.
"""

from typing import Any

from faas.handler import Context, Event

SEEN: set[str | None] = set()


def handle(event: Event, context: Context) -> dict[str, Any]:
    if event.topic is None:  # called directly, not through a topic
        return {"events_seen": len(SEEN)}
    first_time = event.event_id not in SEEN
    SEEN.add(event.event_id)
    context.logger.info(
        "order event",
        extra={
            "topic": event.topic,
            "event_id": event.event_id,
            "attempt": event.attempt,
            "data": event.data if not isinstance(event.data, bytes) else len(event.data),
            "duplicate": not first_time,
        },
    )
    return {"recorded": event.event_id}
