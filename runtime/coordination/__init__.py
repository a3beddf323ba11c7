"""Coordination between gateways that share one NATS server.

lease.py   a JetStream key-value lease: one gateway at a time scales the project
depth.py   every gateway's in-memory queue depth, summed by the lease holder
"""
