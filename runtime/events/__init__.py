"""Durable work: published events, async calls and cron firings, delivered at least once.

    topics.py      topic names, subscription patterns and matching (pure)
    retry.py       done, retry after a backoff, or dead-letter (pure)
    cron.py        schedules, next firing, the missed-run rule (pure)
    allowlist.py   which callback URLs `gateway.callback_allow` permits (pure)
    signing.py     Standard Webhooks signatures and keys of callbacks (pure)
    clock.py       time as an input, so tests pass a fake clock
    queue.py       the WorkQueue protocol every store implements, and its records
    sqlite.py      the default store: one SQLite file under .faas/, WAL, group commit
    database.py    sqlite.py's connection: one thread, group commit
    due.py         sqlite.py's in-memory index of when stored work falls due
    jetstream/     the store on NATS JetStream, for several gateways (its own index)
    delivery.py    the worker: leases due work, invokes functions, records outcomes
    callbacks.py   POSTs async-call results to their callback URLs
    scheduler.py   fires cron schedules into the queue
    service.py     all of the above behind one object for the gateway and `faas up`

This package imports nothing heavy at import time, so the spec loader can
use its pure checks.
"""
