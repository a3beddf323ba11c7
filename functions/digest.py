"""A scheduled function: `schedule` in functions.yaml fires it, one queued call per firing.

The body says which firing this is (`scheduled_at` in the schedule's time
zone); a gateway that was down fires at most the latest missed one on start.
"""

from typing import Any

from faas.handler import Context, Event


def handle(event: Event, context: Context) -> dict[str, Any]:
    firing = event.data if event.topic == "faas.cron" else {}
    context.logger.info("morning digest", extra={"scheduled_at": firing.get("scheduled_at")})
    return {"digest": "sent", "for": firing.get("scheduled_at"), "attempt": event.attempt}
