"""What the coordinator says on the bus: every envelope signed into this replica's feed."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

from chorus_common.envelopes import Envelope, MessageType
from chorus_common.errors import ChorusError
from chorus_common.service_signing import ServiceSigner

__all__ = ["Publish", "Voice"]

#: the bus's publish (``Bus.publish``): sends one envelope
Publish = Callable[[Envelope], Awaitable[Any]]


class Voice:
    """Signs and publishes: consumers refuse coordinator envelopes that are not signed
    (chorus_common.service_signing). A publish the bus refuses is dropped, not raised."""

    def __init__(self, signer: ServiceSigner, publish: Publish) -> None:
        self.signer, self._publish = signer, publish

    async def say(self, mtype: MessageType, payload: dict[str, Any], **fields: Any) -> None:
        env = Envelope(
            type=mtype,
            sender=self.signer.sender,
            sender_role="coordinator",
            payload=payload,
            **fields,
        )
        with contextlib.suppress(ChorusError):
            await self._publish(self.signer.seal(env))
