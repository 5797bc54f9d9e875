"""The bus: the only way onto NATS.

- :mod:`~chorus_common.bus.core` — :class:`Bus`, one connection per process:
  connect and declare the topology (retried until a deadline), typed envelope
  publishing to every route and atomic batches, durable consumers;
- :mod:`~chorus_common.bus.consumer` — the durable pull consumer of envelopes;
- :mod:`~chorus_common.bus.topics` — typed core subjects (:class:`TopicSpec`
  declared once, :meth:`Bus.topic` to publish, subscribe and request);
- :mod:`~chorus_common.bus.buckets` — typed KV buckets (:meth:`Bus.bucket`:
  get, create, compare-and-set update, scan);
- :mod:`~chorus_common.bus.errors` — NATS failures as ChorusErrors, in one place;
- :mod:`~chorus_common.bus.retry` — the one retry-until-deadline loop.
"""

from chorus_common.bus.buckets import Bucket, Change, Versioned
from chorus_common.bus.consumer import EVENTS_STREAM, Consumer, Delivery, Handler
from chorus_common.bus.core import ATOMIC_BATCH_MAX, Bus, StoredMessage, SubscriptionInfo
from chorus_common.bus.errors import bus_errors
from chorus_common.bus.retry import retry_until
from chorus_common.bus.topics import Received, Topic, TopicSpec, declare_topic

__all__ = [
    "ATOMIC_BATCH_MAX",
    "EVENTS_STREAM",
    "Bucket",
    "Bus",
    "Change",
    "Consumer",
    "Delivery",
    "Handler",
    "Received",
    "StoredMessage",
    "SubscriptionInfo",
    "Topic",
    "TopicSpec",
    "Versioned",
    "bus_errors",
    "declare_topic",
    "retry_until",
]
