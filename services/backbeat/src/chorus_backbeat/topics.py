"""The core NATS subjects of BACKBEAT, declared once in :mod:`chorus_common.topics`.

Every agent's :class:`~chorus_common.backbeat.Tracker` follows :data:`BEATS` and
publishes on :data:`STATUS_CLAIMS` too, so the declarations live in chorus_common; this
module keeps their names importable where the service has always found them.

Beat frames and bar reports are signed by the backbeat replica that sends them (a
detached signature in headers, chorus_common.service_signing), so they go out as bytes
already signed over (:meth:`~chorus_common.bus.Topic.publish_raw`), and a subscriber
checks the signature on :attr:`~chorus_common.bus.Received.data`. Everything under
``chorus.backbeat.`` is also kept, for an hour, by the ``CHORUS_BACKBEAT`` stream.
"""

from __future__ import annotations

from chorus_common.topics import BAR_SUBJECT, BARS, BEATS, CLAIM_SUBJECTS, STATUS_CLAIMS

__all__ = ["BARS", "BAR_SUBJECT", "BEATS", "CLAIM_SUBJECTS", "STATUS_CLAIMS"]
