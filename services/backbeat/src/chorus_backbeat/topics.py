"""The core NATS subjects of BACKBEAT, each declared once with the model it carries.

Beat frames and bar reports are signed by the backbeat replica that sends them (a
detached signature in headers, chorus_common.service_signing), so they go out as bytes
already signed over (:meth:`~chorus_common.bus.Topic.publish_raw`), and a subscriber
checks the signature on :attr:`~chorus_common.bus.Received.data`. Everything under
``chorus.backbeat.`` is also kept, for an hour, by the ``CHORUS_BACKBEAT`` stream.

chorus_common's :class:`~chorus_common.backbeat.Tracker` (every agent's) follows
:data:`BEATS` and publishes on :data:`STATUS_CLAIMS` too, still by subject name.
"""

from __future__ import annotations

from chorus_common.backbeat import BarReport, BeatFrame, StatusClaim
from chorus_common.bus import declare_topic
from chorus_common.subjects import BACKBEAT_BEAT

__all__ = ["BARS", "BAR_SUBJECT", "BEATS", "CLAIM_SUBJECTS", "STATUS_CLAIMS"]

BEATS = declare_topic(
    BACKBEAT_BEAT,
    BeatFrame,
    "The pulse leader's beat frame, one per beat, signed (detached) by the backbeat replica",
)

STATUS_CLAIMS = declare_topic(
    "chorus.backbeat.status.{agent}",
    StatusClaim,
    "An agent's status claim on the beat: a heartbeat, or one of an operation's six phases",
)

BAR_SUBJECT = "chorus.backbeat.bar"

BARS = declare_topic(
    BAR_SUBJECT,
    BarReport,
    "The report of a bar that ended, signed (detached) by the pulse leader's replica",
)

#: what the view listens on: every agent's claims
CLAIM_SUBJECTS = STATUS_CLAIMS.wildcard
