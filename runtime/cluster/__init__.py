"""What the gateways of one cluster (`cluster.queue: nats`) share on their NATS server.

    lease.py      a JetStream key-value lease: one gateway at a time scales the project
    depth.py      every gateway's in-memory queue depth, summed by the lease holder
    gateways.py   SharedCoordination: the lease and the depths behind the scaler's
                  `Coordination` (runtime/scaling/coordination.py)

The durable queue they share is runtime/events/jetstream/.
"""
