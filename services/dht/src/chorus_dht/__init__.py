"""CHORUS dht service: kademlia DHT node over NATS with encrypted UCXL storage."""

from chorus_dht.service import DhtService

__all__ = ["DhtService"]
