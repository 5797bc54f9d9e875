"""Web sessions that cannot be forged offline and end when a person signs out.

A session is a random id in the browser's cookie and a record in the NATS KV
bucket ``chorus-hap-sessions`` (person, a fingerprint of the token used to sign
in, created, expires), so every HAP replica sees the same sessions and a
sign-out on one ends the session on all.  Nothing in the cookie can be made
from public facts: the id is 256 random bits, and the record is filed under an
HMAC of the id keyed with the portal's session key (:func:`load_session_key`:
``CHORUS_HAP_SESSION_KEY`` or a random key kept in the data folder).  Every
JetStream user can read KV buckets through the JetStream API, so a record must
be useless to a reader: its key does not reveal the id, and its token
fingerprint is an HMAC, not a hash a reader could test guesses against.

:class:`SessionSeal` is the pure part (ids, keys, fingerprints, the decision
whether a record is still valid, all with ``now`` passed in);
:class:`SessionStore` files and fetches records in KV (a typed
:class:`~chorus_common.bus.Bucket` of :class:`SessionRecord`).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import os
import re
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path

from pydantic import BaseModel

from chorus_common.bus import Bucket, Bus, bus_errors
from chorus_common.errors import AuthError, ConfigError, MalformedBodyError, UnavailableError
from chorus_common.topology import BUCKET_HAP_SESSIONS

log = logging.getLogger(__name__)

__all__ = [
    "KEY_BYTES",
    "KEY_FILE",
    "MIN_SETTING_CHARS",
    "SessionError",
    "SessionRecord",
    "SessionSeal",
    "SessionStore",
    "load_session_key",
    "session_records",
]

#: the key file in the data folder when no CHORUS_HAP_SESSION_KEY is given
KEY_FILE = "hap-session.key"
KEY_BYTES = 32
#: shortest CHORUS_HAP_SESSION_KEY accepted (e.g. ``openssl rand -hex 32`` gives 64)
MIN_SETTING_CHARS = 32
#: a session id as issued: 32 random bytes, URL-safe base64 without padding
_SESSION_ID = re.compile(r"^[A-Za-z0-9_\-]{43}$")


class SessionError(AuthError):
    """The browser holds no usable session; the message tells the person what to do."""


class SessionRecord(BaseModel):
    """What the server keeps about one signed-in browser (the document in
    ``chorus-hap-sessions`` under :meth:`SessionSeal.record_key`)."""

    person: str
    #: :meth:`SessionSeal.fingerprint` of the token signed in with: revoking it ends the session
    token: str
    created: float
    expires: float


def session_records(bus: Bus) -> Bucket[SessionRecord]:
    """The session records of ``chorus-hap-sessions``, shared by every replica."""
    return bus.bucket(BUCKET_HAP_SESSIONS, SessionRecord)


@contextlib.contextmanager
def _unavailable(what: str) -> Iterator[None]:
    """A bus failure inside as the 503 HAP has always answered, naming ``what``."""
    try:
        with bus_errors(what):
            yield
    except UnavailableError as exc:
        raise UnavailableError(f"{what}: {exc.detail}") from None


def load_session_key(setting: str | None, data_dir: Path) -> bytes:
    """The session key: from the setting (a Secret), else the data folder's key file.

    The file is created once with 32 bytes from :mod:`secrets`, mode 0600, and read
    back on every later start, so sessions survive a restart.  Replicas share
    sessions only if they share the key: give them all one ``CHORUS_HAP_SESSION_KEY``.
    Blocking file I/O: call it at start-up, not on a request path.
    """
    if setting is not None:
        if len(setting) < MIN_SETTING_CHARS:
            raise ConfigError(
                f"CHORUS_HAP_SESSION_KEY has {len(setting)} characters; it needs at least "
                f"{MIN_SETTING_CHARS} (e.g. the output of `openssl rand -hex 32`)"
            )
        # a uniform 32-byte key whatever the setting's alphabet
        return hashlib.sha256(b"chorus-hap-session-key\x00" + setting.encode()).digest()
    path = data_dir / KEY_FILE
    data_dir.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            log.warning("session key %s was readable by others (mode %o); now 0600", path, mode)
            path.chmod(0o600)
        key = path.read_bytes()
        if len(key) != KEY_BYTES:
            raise ConfigError(
                f"{path} holds {len(key)} bytes, not a {KEY_BYTES}-byte session key; "
                "delete it to make a new one (everyone signs in again)"
            ) from None
        return key
    key = secrets.token_bytes(KEY_BYTES)
    with os.fdopen(fd, "wb") as f:
        f.write(key)
    log.info("made a new session key in %s", path)
    return key


class SessionSeal:
    """The pure rules of sessions, keyed with the portal's session key."""

    def __init__(self, key: bytes, lifetime: float) -> None:
        self._key, self.lifetime = key, lifetime

    def _mac(self, purpose: str, value: str) -> str:
        return hmac.new(self._key, f"{purpose}\x00{value}".encode(), hashlib.sha256).hexdigest()

    @staticmethod
    def new_id() -> str:
        """A fresh session id, the cookie's whole value."""
        return secrets.token_urlsafe(32)

    def record_key(self, session_id: str) -> str:
        """Where the session's record is filed in KV; raises if the cookie is no session id."""
        if not _SESSION_ID.match(session_id):
            raise SessionError("your session is not valid; please sign in again")
        return "s." + self._mac("session", session_id)

    def fingerprint(self, token: str) -> str:
        """Names a token in a record without revealing it (tokens may be short)."""
        return self._mac("token", token)[:32]

    def record(self, person: str, token: str, now: float) -> SessionRecord:
        return SessionRecord(
            person=person,
            token=self.fingerprint(token),
            created=now,
            expires=now + self.lifetime,
        )

    def person(self, record: SessionRecord, logins: dict[str, str], now: float) -> str:
        """Who the record signs in, if its token still signs in that person now."""
        if record.expires <= now:
            raise SessionError("your session has expired; please sign in again")
        current = {self.fingerprint(token): person for token, person in logins.items()}
        if current.get(record.token) != record.person:
            raise SessionError(
                "the token you signed in with is no longer accepted here; please sign in again"
            )
        return record.person


class SessionStore:
    """Session records in the ``chorus-hap-sessions`` bucket, shared by every replica.

    Each record carries a per-message TTL of the session lifetime, so the server
    drops it when it expires; the expiry inside the record is checked as well.
    """

    def __init__(self, records: Bucket[SessionRecord], seal: SessionSeal) -> None:
        self.records, self.seal = records, seal

    async def open(self, person: str, token: str, now: float) -> str:
        """File a new session and return its id for the cookie."""
        session_id = self.seal.new_id()
        record = self.seal.record(person, token, now)
        with _unavailable("cannot store the session in NATS KV"):
            # the server drops the record when the session's lifetime is over
            await self.records.create(
                self.seal.record_key(session_id), record, ttl=self.seal.lifetime
            )
        return session_id

    async def person(self, session_id: str | None, logins: dict[str, str], now: float) -> str:
        """The person a cookie signs in, or :class:`SessionError` saying why not."""
        if not session_id:
            raise SessionError("please sign in")
        key = self.seal.record_key(session_id)
        try:
            with _unavailable("cannot read sessions from NATS KV"):
                found = await self.records.get(key)
        except MalformedBodyError:  # not a record this portal filed
            found = None
        if found is None:  # never issued, signed out, or expired
            raise SessionError("your session is not valid; please sign in again")
        try:
            return self.seal.person(found.value, logins, now)
        except SessionError:
            await self._forget(key)
            raise

    async def close(self, session_id: str | None) -> None:
        """Sign out: delete the record, so the cookie is refused everywhere from now on."""
        if session_id and _SESSION_ID.match(session_id):
            await self._forget(self.seal.record_key(session_id))

    async def _forget(self, key: str) -> None:
        with _unavailable("cannot delete the session from NATS KV"):
            await self.records.delete(key)
