"""Durable work: published events, async calls and cron firings, delivered at least once.

    retry.py       done, retry after a backoff, or dead-letter (pure)
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

Topics, cron schedules and callback allow-lists are languages of
functions.yaml, so their grammar and meaning live in runtime/spec/ (topics.py,
cron.py, allowlist.py): this package reads the spec, the spec never imports it.
"""
