"""Wiring and lifecycle of the dht service; its domain arrives in its own issue."""

from __future__ import annotations

from chorus_common.service import Service


class DhtService(Service):
    name = "dht"
    description = "Kademlia DHT node over NATS with encrypted UCXL storage"
