"""The behaviour every service shares, as a test class each service's tests inherit.

``class TestElectionBehaviour(ServiceBehaviour): service_class = ElectionService``
runs: health endpoints, metrics with constant labels, a NATS micro PING/INFO,
problem+json errors (bad request bodies among them: deep, not UTF-8, of a wrong
Content-Type), a SIGTERM drain of the real ``python -m`` process, and two
fuzzers: schemathesis against the service's own OpenAPI document (no 5xx, every
status and content type documented, bodies matching their schemas) and malformed
payloads on every subject the service subscribes to (poison is terminated and
counted, never redelivered, and never stops the service).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import httpx
import nats
import pytest
from nats.aio.msg import Msg

from chorus_common.bus import SubscriptionInfo
from chorus_common.config import ChorusSettings
from chorus_common.envelopes import Envelope, MessageType
from chorus_common.envelopes.samples import SAMPLE_PAYLOADS
from chorus_common.natsserver import free_port
from chorus_common.processes import ServiceProcess
from chorus_common.service import Service, serves_before_setup
from chorus_common.subjects import routes, subject_matches
from chorus_common.testing._inprocess import serve_in_process
from chorus_common.testing._metrics import metric_value
from chorus_common.testing._wait import wait_until

__all__ = ["ServiceBehaviour"]

#: the message limit the poison test gives the service, so "oversize" fits in a NATS message
POISON_LIMIT = 16 * 1024
#: hypothesis examples per operation (positive and negative cases together)
FUZZ_EXAMPLES = 25
#: how deep the hostile bodies nest: far past any parser's recursion limit
HOSTILE_DEPTH = 100_000


def _hostile_bodies(accepted: set[str]) -> list[tuple[str, str, bytes, int | None]]:
    """Bodies every route must refuse with a 4xx: (name, Content-Type, body, the status).

    The JSON cases use a JSON media type the operation accepts; ``None`` as status
    means any 4xx (a parser may see a nesting problem as 400 or 422, or a size limit
    may answer 413 first).
    """
    json_type = next(
        (t for t in sorted(accepted) if t == "application/json" or t.endswith("+json")), None
    )
    cases: list[tuple[str, str, bytes, int | None]] = []
    if json_type is not None:
        cases += [
            ("100,000 nested [", json_type, b"[" * HOSTILE_DEPTH, None),
            ('100,000 nested {"a":', json_type, b'{"a":' * HOSTILE_DEPTH, None),
            ("invalid UTF-8", json_type, b'{"text": "\xff\xfe not UTF-8 \xc3"}', 400),
        ]
    if "text/plain" not in accepted:
        cases.append(("Content-Type text/plain", "text/plain", b"{}", 415))
    return cases


def _fill_path(path: str, operation: dict[str, Any]) -> str:
    """The operation's path with a plausible value for each parameter (digits for integers)."""
    for param in operation.get("parameters", []):
        if param.get("in") == "path":
            numeric = param.get("schema", {}).get("type") == "integer"
            path = path.replace("{" + param["name"] + "}", "1" if numeric else "fuzz")
    return path


def _poison(subject_filter: str, limit: int) -> list[tuple[str, bytes, bool]]:
    """Malformed payloads: (name, data, undecodable as an envelope)."""
    samples = [Envelope(type=t, sender="fuzzer", payload=SAMPLE_PAYLOADS[t]) for t in MessageType]
    # a well-formed envelope whose type never travels on this subject
    wrong_type = next(
        (e for e in samples if not any(subject_matches(subject_filter, s) for s in routes(e))),
        None,
    )
    bad_payload = Envelope(
        type=MessageType.META_DISCUSSION,
        sender="fuzzer",
        payload=SAMPLE_PAYLOADS[MessageType.META_DISCUSSION],
    ).model_dump(mode="json") | {"payload": {"bogus": [1, {"x": None}]}}
    depth = min(limit // 2 - 8, 4000)
    out = [
        ("empty", b"", True),
        ("not JSON", b"\xff\xfe\x00 not json {", True),
        ("truncated JSON", b'{"id": "01J", "type": "meta_disc', True),
        ("JSON array", b"[1, 2, 3]", True),
        ("JSON string", b'"hello"', True),
        ("JSON null", b"null", True),
        ("object of the wrong shape", b'{"hello": "world", "payload": 5, "node": [1]}', True),
        ("payload not of its type", json.dumps(bad_payload).encode(), True),
        ("deeply nested", b"[" * depth + b"]" * depth, True),
        ("oversize", b'{"pad": "' + b"x" * (limit + 1) + b'"}', True),
    ]
    if wrong_type is not None:
        out.append(("valid envelope of the wrong type", wrong_type.encode(), False))
    return out


@contextlib.contextmanager
def _client_errors() -> Iterator[list[str]]:
    """What the bus logs when a subscription callback raises (``Bus._on_error``)."""
    seen: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.getMessage().startswith("NATS client error"):
                seen.append(record.getMessage())

    logger = logging.getLogger("chorus.bus")
    handler, level = Collect(logging.DEBUG), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield seen
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


async def _at_least(value: Awaitable[float], minimum: float) -> bool:
    return await value >= minimum


async def _until(condition: Callable[[], Awaitable[bool]], message: str) -> None:
    """wait_until with the deadline every check here uses (generous: a busy 2-core runner)."""
    typed: Callable[[], bool | Awaitable[bool]] = condition
    await wait_until(typed, timeout=15, message=message)


def _concrete(subject_filter: str) -> str:
    """A subject a wildcard filter matches (``*`` and ``>`` become tokens)."""
    return ".".join(
        "fuzz" if t == "*" else "fuzz.poison" if t == ">" else t for t in subject_filter.split(".")
    )


def _given_cases(
    operation: Any, call: Callable[[Any, bool], None], max_examples: int
) -> Callable[[], None]:
    """A hypothesis test over one operation: positive, negative and documented-example
    cases, with the admin token and without."""
    import hypothesis
    from hypothesis import strategies as st
    from schemathesis import GenerationMode

    @hypothesis.settings(
        max_examples=max_examples,
        derandomize=True,
        deadline=None,
        database=None,
        phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
        suppress_health_check=list(hypothesis.HealthCheck),
    )
    @hypothesis.given(
        case=st.one_of(
            operation.as_strategy(GenerationMode.POSITIVE),
            operation.as_strategy(GenerationMode.NEGATIVE),
            # the documented examples reach past input validation into the service
            *operation.get_strategies_from_examples(),
        ),
        authorized=st.booleans(),
    )
    def run(case: Any, authorized: bool) -> None:
        call(case, authorized)

    return run


def _fuzz_openapi(
    doc: dict[str, Any],
    base_url: str,
    token: str | None,
    skip: dict[str, str],
    max_examples: int,
) -> tuple[list[str], dict[str, int]]:
    """Blocking: generate cases for every operation and check each response.

    Runs in a worker thread, because the service answers from the test's event loop.
    Returns the failures (one per operation, with a curl line to reproduce) and the
    number of calls per operation.
    """
    import requests
    import schemathesis
    from schemathesis.checks import not_a_server_error
    from schemathesis.core.failures import FailureGroup
    from schemathesis.core.result import Err
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    checks = [
        not_a_server_error,
        status_code_conformance,
        content_type_conformance,
        response_schema_conformance,
    ]
    schema = schemathesis.openapi.from_dict(doc)
    failures: list[str] = []
    calls: dict[str, int] = {}
    session = requests.Session()
    for result in schema.get_all_operations():
        if isinstance(result, Err):
            failures.append(f"the OpenAPI document has an invalid operation: {result.err()}")
            continue
        operation = result.ok()
        label = f"{operation.method.upper()} {operation.path}"
        if label in skip:
            continue
        calls[label] = 0
        # server-sent events never end: schemathesis reads a stream until it is silent
        # for the read timeout, and checks what arrived by then
        streams = any(
            "text/event-stream" in (r.get("content") or {})
            for r in operation.definition.raw.get("responses", {}).values()
        )
        timeout: float | tuple[float, float] = (15, 1) if streams else 15

        def call(case: Any, authorized: bool, label: str = label, timeout: Any = timeout) -> None:
            secured = bool(case.operation.definition.raw.get("security"))
            headers = (
                {"Authorization": f"Bearer {token}"} if secured and authorized and token else None
            )
            calls[label] += 1
            response = case.call(
                base_url=base_url, session=session, headers=headers, timeout=timeout
            )
            case.validate_response(response, checks=checks, headers=headers)

        run = _given_cases(operation, call, max_examples)
        try:
            run()
        except FailureGroup as exc:
            failures.append(f"{label}:\n{exc}")
        except Exception as exc:  # a transport error is as much a finding as a bad status
            # hypothesis wraps a failure it could not reproduce (state changed meanwhile)
            inner = "".join(f"\n  {type(e).__name__}: {e}" for e in getattr(exc, "exceptions", ()))
            failures.append(f"{label}: {type(exc).__name__}: {exc}{inner}")
    session.close()
    return failures, calls


async def _answer(
    client: httpx.AsyncClient, method: str, url: str, body: Any, headers: dict[str, str]
) -> tuple[int, str, bytes]:
    """Status, content type and body; streamed, since an event stream let in never ends."""
    request = client.build_request(method, url, json=body, headers=headers)
    response = await client.send(request, stream=True)
    try:
        kind = response.headers.get("content-type", "")
        text = b"" if "event-stream" in kind else await response.aread()
        return response.status_code, kind, text
    finally:
        await response.aclose()


class ServiceBehaviour:
    service_class: ClassVar[type[Service]]
    #: extra settings a service needs to start in tests
    settings_overrides: ClassVar[dict[str, Any]] = {}
    #: extra environment for the SIGTERM process test
    process_env: ClassVar[dict[str, str]] = {}
    #: operations the OpenAPI fuzzer leaves alone, ``"GET /v1/stream"`` → the reason
    fuzz_skip: ClassVar[dict[str, str]] = {}
    #: concrete subjects to poison besides those derived from the subscriptions
    #: (e.g. each event a ``chorus.election.*`` subscriber tells apart)
    poison_subjects: ClassVar[tuple[str, ...]] = ()

    @pytest.fixture
    async def running(
        self, make_settings: Callable[..., ChorusSettings]
    ) -> AsyncIterator[tuple[Service, httpx.AsyncClient]]:
        settings = make_settings(self.service_class.settings_class, **self.settings_overrides)
        service = self.service_class(settings)
        async with serve_in_process(service) as url, httpx.AsyncClient(base_url=url) as client:
            yield service, client

    async def test_health_endpoints(self, running: tuple[Service, httpx.AsyncClient]) -> None:
        service, client = running
        for path in ("/health/live", "/livez"):
            resp = await client.get(path)
            assert resp.status_code == 200 and resp.json()["status"] == "alive"
        for path in ("/health/ready", "/readyz"):
            resp = await client.get(path)
            assert resp.status_code == 200, resp.text
            assert resp.json()["status"] == "ready"
        doc = (await client.get("/health")).json()
        assert doc["service"] == service.name and doc["ready"] is True
        checks = (await client.get("/health/checks")).json()["checks"]
        nats_check = next(c for c in checks if c["name"] == "nats")
        assert nats_check["critical"] is True and nats_check["status"] == "pass"
        assert nats_check["latency_ms"] is not None

    async def test_metrics_exposed_with_constant_labels(
        self, running: tuple[Service, httpx.AsyncClient]
    ) -> None:
        service, client = running
        await client.get("/health")
        text = (await client.get("/metrics")).text
        assert "chorus_bus_connected{" in text
        line = next(m for m in text.splitlines() if m.startswith("chorus_bus_connected{"))
        assert f'node_id="{service.settings.node_id}"' in line
        assert 'version="' in line and 'environment="' in line and 'cluster="' in line
        assert line.endswith(" 1.0")
        assert "chorus_system_http_requests_total{" in text

    async def test_nats_micro_ping_and_info(
        self, running: tuple[Service, httpx.AsyncClient]
    ) -> None:
        service, _ = running
        nc = await nats.connect(service.settings.nats_url)
        try:
            name = f"chorus-{service.name}"
            ping = json.loads((await nc.request(f"$SRV.PING.{name}", b"", timeout=2)).data)
            assert ping["name"] == name and ping["version"] == service.version
            info = json.loads((await nc.request(f"$SRV.INFO.{name}", b"", timeout=2)).data)
            assert any(
                e["subject"] == f"chorus.svc.{service.name}.health" for e in info["endpoints"]
            )
            health = json.loads(
                (await nc.request(f"chorus.svc.{service.name}.health", b"", timeout=2)).data
            )
            assert health["service"] == service.name and health["ready"] is True
        finally:
            await nc.close()

    async def test_errors_are_problem_json(
        self, running: tuple[Service, httpx.AsyncClient]
    ) -> None:
        _, client = running
        resp = await client.get("/no/such/route")
        assert resp.status_code == 404
        assert resp.headers["content-type"].startswith("application/problem+json")
        body = resp.json()
        assert body["status"] == 404 and body["detail"] and "Traceback" not in resp.text

    def test_sigterm_drains_within_ten_seconds(self, nats_url: str, tmp_path: Path) -> None:
        proc = ServiceProcess(
            instance=self.service_class.name,
            service=self.service_class.name,
            port=free_port(),
            env={
                "CHORUS_NATS_URL": nats_url,
                "CHORUS_LICENSE_REQUIRED": "false",  # no licensing service here
                "CHORUS_DATA_DIR": str(tmp_path / "data"),
                "CHORUS_HEALTH_INTERVAL_SECONDS": "0.5",
                "CHORUS_ADMIN_TOKEN": "test-admin-token",
                **self.process_env,
            },
            log_path=tmp_path / "service.log",
        ).start()
        try:
            deadline = time.monotonic() + 30
            while not proc.is_ready():
                assert proc.running, proc.log_tail()
                assert time.monotonic() < deadline, f"not ready:\n{proc.log_tail()}"
                time.sleep(0.1)
            proc.signal(signal.SIGTERM)
            assert proc.proc is not None
            code = proc.proc.wait(timeout=10)
            assert code == 0, proc.log_tail()
        finally:
            proc.kill()

    async def test_openapi_fuzz_no_server_errors(
        self, running: tuple[Service, httpx.AsyncClient]
    ) -> None:
        """schemathesis on every documented operation: no 5xx, only documented statuses,
        content types and bodies; with the admin token and without."""
        service, client = running
        resp = await client.get("/openapi.json")
        assert resp.status_code == 200
        doc = resp.json()
        token = service.settings.admin_token
        started = time.monotonic()
        failures, calls = await asyncio.to_thread(
            _fuzz_openapi,
            doc,
            str(client.base_url),
            token.get_secret_value() if token is not None else None,
            self.fuzz_skip,
            FUZZ_EXAMPLES,
        )
        elapsed = time.monotonic() - started
        assert not failures, "\n\n".join(failures)
        documented = {
            f"{method.upper()} {path}" for path, ops in doc["paths"].items() for method in ops
        }
        assert set(self.fuzz_skip) <= documented, "fuzz_skip names an unknown operation"
        assert set(calls) == documented - set(self.fuzz_skip)
        assert all(n > 0 for n in calls.values()), calls
        assert elapsed < 60, f"fuzzing took {elapsed:.1f}s: {calls}"
        ready = await client.get("/health/ready")
        assert ready.status_code == 200, ready.text

    async def test_bad_bodies_are_4xx_problems(
        self, running: tuple[Service, httpx.AsyncClient]
    ) -> None:
        """Every operation with a request body refuses deep nesting, invalid UTF-8 and a
        Content-Type it does not take with a 4xx problem (415 names what it takes), never
        a 5xx or a success; the admin token is sent so auth cannot answer first."""
        service, client = running
        doc = (await client.get("/openapi.json")).json()
        token = service.settings.admin_token
        auth = {"Authorization": f"Bearer {token.get_secret_value()}"} if token else {}
        wrong: list[str] = []
        tried = 0
        for path, operations in doc["paths"].items():
            for method, operation in operations.items():
                accepted = set((operation.get("requestBody") or {}).get("content") or {})
                if not accepted:
                    continue
                url = _fill_path(path, operation)
                for name, content_type, body, status in _hostile_bodies(accepted):
                    tried += 1
                    resp = await client.request(
                        method.upper(),
                        url,
                        content=body,
                        headers={**auth, "Content-Type": content_type},
                        timeout=15,
                    )
                    problem = resp.headers.get("content-type", "").startswith(
                        "application/problem+json"
                    )
                    if (
                        not 400 <= resp.status_code < 500
                        or (status is not None and resp.status_code != status)
                        or not problem
                        or (status == 415 and not any(t in resp.text for t in accepted))
                    ):
                        wrong.append(
                            f"{method.upper()} {path} with {name}: {resp.status_code} "
                            f"{resp.headers.get('content-type')} {resp.text[:200]}"
                        )
        assert not wrong, "bad bodies not refused with a 4xx problem:\n" + "\n".join(wrong)
        if tried == 0:
            pytest.skip(f"{service.name} documents no operation with a request body")
        ready = await client.get("/health/ready")
        assert ready.status_code == 200, ready.text

    async def test_every_operation_refuses_a_token_without_its_scope(
        self, make_settings: Callable[..., ChorusSettings]
    ) -> None:
        """Reads closed (the deployed default): each operation names its scope and keeps to it.

        No token is a 401 everywhere but the probes; a read-only token is a 403 wherever
        ``publish`` or ``admin`` is needed, and passes the scope check of a read.
        """
        settings = make_settings(
            self.service_class.settings_class,
            **{**self.settings_overrides, "public_read": False, "read_tokens": "test-read-token"},
        )
        service = self.service_class(settings)
        reader = {"Authorization": "Bearer test-read-token"}
        async with serve_in_process(service) as url, httpx.AsyncClient(base_url=url) as client:
            doc = (await client.get("/openapi.json")).json()
            checked = 0
            for path, operations in doc["paths"].items():
                concrete = re.sub(r"\{[^}]+\}", "scope-probe", path)
                for method, operation in operations.items():
                    scope = operation.get("x-chorus-scope")
                    label = f"{method.upper()} {path}"
                    if serves_before_setup(path):
                        assert scope is None, f"{label} is a probe and needs no scope"
                        continue
                    assert scope is not None, f"{label} does not name its scope"
                    if scope not in ("read", "publish", "admin"):
                        continue  # checks credentials of its own (enrolment)
                    body: dict[str, Any] | None = (
                        {} if method.upper() in ("POST", "PUT", "PATCH") else None
                    )
                    call = (client, method.upper(), concrete, body)
                    status, kind, _ = await _answer(*call, {})
                    assert status == 401, f"{label} without a token: {status}"
                    assert kind.startswith("application/problem+json"), f"{label}: {kind}"
                    status, _, text = await _answer(*call, reader)
                    if scope == "read":
                        assert status not in (401, 403), f"{label} with a read token: {text!r}"
                    else:
                        assert status == 403, f"{label} with a read token: {status}"
                        assert json.loads(text)["reason"] == "scope_missing", text
                    checked += 1
            assert checked, "no operation with a scope"

    async def test_malformed_payloads_are_terminated_and_counted(
        self, make_settings: Callable[..., ChorusSettings]
    ) -> None:
        """Poison on every subscribed subject: JetStream consumers terminate and count it
        (never redelivered), core subscribers ignore it or answer an error, and the
        service stays ready throughout."""
        settings = make_settings(
            self.service_class.settings_class,
            **{**self.settings_overrides, "max_message_bytes": POISON_LIMIT},
        )
        service = self.service_class(settings)
        async with serve_in_process(service) as url, httpx.AsyncClient(base_url=url) as client:
            with _client_errors() as raised:
                await self._poison_everything(service, client, raised)

    async def _poison_everything(
        self, service: Service, client: httpx.AsyncClient, raised: list[str]
    ) -> None:
        subs = service.bus.subscriptions
        assert any(s.subject == f"chorus.svc.{service.name}.health" for s in subs), subs
        pulled = [s for s in subs if s.kind == "jetstream"]
        targets: dict[str, str] = {}  # subject → how to publish it
        for sub in subs:
            subject = _concrete(sub.subject)
            targets.setdefault(subject, "core" if sub.kind == "core" else "jetstream")
        for subject in self.poison_subjects:
            targets.setdefault(subject, "core")

        async def metrics() -> str:
            return (await client.get("/metrics")).text

        before = await metrics()
        nc = await nats.connect(service.settings.nats_url)
        replies: dict[str, Msg] = {}
        try:
            js = nc.jetstream()
            inbox = nc.new_inbox()

            async def on_reply(msg: Msg) -> None:
                replies[msg.subject] = msg

            await nc.subscribe(f"{inbox}.>", cb=on_reply)
            sent: dict[str, tuple[str, str]] = {}  # reply subject → (subject, payload name)
            published: list[tuple[str, str, bool]] = []  # (subject, payload, undecodable)
            for n, (subject, how) in enumerate(sorted(targets.items())):
                for i, (name, data, bad) in enumerate(_poison(subject, POISON_LIMIT)):
                    published.append((subject, name, bad))
                    if how == "jetstream":
                        await js.publish(
                            subject, data, headers={"Nats-Msg-Id": f"poison-{n}-{i}"}, timeout=5
                        )
                    else:
                        reply = f"{inbox}.{n}.{i}"
                        sent[reply] = (subject, name)
                        await nc.publish(subject, data, reply=reply)
            await nc.flush()

            # every core and push subscriber took what it was sent off its queue
            def drained() -> bool:
                now = {(s.subject, s.kind): s for s in service.bus.subscriptions}
                for s in subs:
                    if s.kind == "jetstream" or (s.subject, s.kind) not in now:
                        continue
                    current = now[(s.subject, s.kind)]
                    expected = sum(
                        1 for subject, _, _ in published if subject_matches(s.subject, subject)
                    )
                    if (current.delivered or 0) - (s.delivered or 0) < expected or current.pending:
                        return False
                return True

            await wait_until(drained, timeout=15, message="every subscriber took its poison")

            # JetStream consumers: each undecodable message terminated and counted once,
            # the wrong-type envelope handled (acked), nothing pending or redelivered
            for sub in pulled:
                mine = [
                    (name, bad) for s, name, bad in published if subject_matches(sub.subject, s)
                ]
                await self._check_consumer(js, sub, mine, before, metrics)

            # request/reply endpoints answered with an error or not at all, never a crash
            crashed = [
                f"{subject} ({name}): {replies[r].headers} {replies[r].data[:200]!r}"
                for r, (subject, name) in sent.items()
                if r in replies
                and (
                    str((replies[r].headers or {}).get("Nats-Service-Error-Code", "")).startswith(
                        "5"
                    )
                    or b"Traceback" in replies[r].data
                )
            ]
            assert not crashed, "a request handler crashed on malformed input:\n" + "\n".join(
                crashed
            )
            health = await nc.request(f"chorus.svc.{service.name}.health", b"", timeout=5)
            assert json.loads(health.data)["ready"] is True
        finally:
            with contextlib.suppress(Exception):
                await nc.close()
        after = await metrics()
        errors_before = metric_value(before, "chorus_bus_errors_total")
        errors_after = metric_value(after, "chorus_bus_errors_total")
        assert errors_after == errors_before, (
            f"subscription callbacks raised on malformed input "
            f"({errors_after - errors_before:.0f} errors reported by the NATS client): {raised}"
        )
        ready = await client.get("/health/ready")
        assert ready.status_code == 200, ready.text

    async def _check_consumer(
        self,
        js: Any,
        sub: SubscriptionInfo,
        sent: list[tuple[str, bool]],
        before: str,
        metrics: Callable[[], Awaitable[str]],
    ) -> None:
        """One pull consumer: poison terminated and counted once, nothing left to redeliver."""
        consumer = sub.durable or sub.subject
        expected = sum(1 for _, bad in sent if bad)
        assert expected > 0, f"no poison reached {sub.subject}"
        base = metric_value(before, "chorus_bus_poison_messages_total", consumer=consumer)

        async def poisoned() -> float:
            text = await metrics()
            return metric_value(text, "chorus_bus_poison_messages_total", consumer=consumer) - base

        await _until(
            lambda: _at_least(poisoned(), expected),
            f"{expected} poison messages counted on {consumer}",
        )
        assert await poisoned() == expected, f"{consumer}: counted {await poisoned()}"
        oversize = metric_value(
            await metrics(),
            "chorus_bus_poison_messages_total",
            consumer=consumer,
            reason="oversize",
        ) - metric_value(
            before, "chorus_bus_poison_messages_total", consumer=consumer, reason="oversize"
        )
        assert oversize == sum(1 for name, _ in sent if name == "oversize"), "oversize not named"
        if sub.durable is not None and sub.stream is not None:
            stream, durable = sub.stream, sub.durable

            async def settled() -> bool:
                info = await js.consumer_info(stream, durable)
                return bool(
                    info.num_pending == 0
                    and info.num_ack_pending == 0
                    and info.num_redelivered == 0
                )

            await _until(settled, f"{consumer} acked or terminated all")
        failed = metric_value(
            await metrics(), "chorus_bus_consumed_total", consumer=consumer, result="error"
        )
        assert failed == metric_value(
            before, "chorus_bus_consumed_total", consumer=consumer, result="error"
        ), f"the handler of {consumer} failed on a well-formed envelope of another type"
