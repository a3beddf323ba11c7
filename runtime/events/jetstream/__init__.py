"""The durable queue on NATS JetStream, for several gateways sharing one project's work.

    store.py       JetStreamQueue: the WorkQueue on JetStream (what differs from SQLite, and why)
    streams.py     the connection, streams, consumers, pulls and the counts kept of them
    track.py       one consumer's counts, kept in memory between reads (pure)
    held.py        the messages this gateway leased, and releases that do not count
    calls.py       async-call records in the `calls` KV bucket
    dead.py        the dead-letter stream
    callbacks.py   owed callbacks as a work queue of their own
    cron.py        when each schedule last fired, shared by every gateway
    codec.py       how records are laid out in messages and KV entries (pure)
    names.py       names of a project's streams, subjects and buckets (pure)

`store.JetStreamQueue` is the entry; the other modules are its parts, except
`names`, which the Kubernetes exporter and the shared gateway state use too.
This file imports nothing, so reading `names` costs the exporter no NATS client.
"""
