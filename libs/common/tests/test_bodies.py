"""Request bodies are checked once, before any route reads them: type, UTF-8, depth."""

from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
from fastapi import FastAPI, Request
from pydantic import BaseModel

from chorus_common.bodies import FORM_BODY, MAX_JSON_DEPTH, check_body, check_depth, loads_json
from chorus_common.config import ChorusSettings
from chorus_common.errors import MalformedBodyError, UnsupportedMediaTypeError
from chorus_common.service import Service
from chorus_common.testing import serve_in_process

JSON_ONLY = {"application/json"}
FORM_BODY_TYPE = next(iter(FORM_BODY["requestBody"]["content"]))


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def test_depth_up_to_the_limit_passes_and_one_more_is_refused() -> None:
    check_depth(nested(MAX_JSON_DEPTH))
    with pytest.raises(MalformedBodyError, match=f"more than {MAX_JSON_DEPTH}"):
        check_depth(nested(MAX_JSON_DEPTH + 1))
    with pytest.raises(MalformedBodyError):
        check_depth(b'{"a":' * 100_000)
    with pytest.raises(MalformedBodyError):
        check_depth(b"[" * 100_000)  # never closed: the parser would recurse all the same


def test_brackets_inside_strings_do_not_count() -> None:
    text = '"' + "[" * 500 + '\\"' + "{" * 500 + '"'
    check_depth(f'{{"a": [{text}, {text}], "b": "\\\\"}}'.encode())
    # an escaped backslash ends before the quote: the string closes, the brackets count
    with pytest.raises(MalformedBodyError):
        check_depth(b'["\\\\", ' + nested(MAX_JSON_DEPTH + 1) + b"]")


def test_wide_bodies_are_not_deep() -> None:
    check_depth(b"[" + b",".join([b"[1, {}]"] * 10_000) + b"]")


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json",
        "application/json; charset=utf-8",
        "Application/JSON;charset=UTF-8",
        "application/merge-patch+json",
    ],
)
def test_json_and_json_suffix_types_are_taken(content_type: str) -> None:
    check_body(b'{"a": 1}', content_type, JSON_ONLY)


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "application/jsonx", None]
)
def test_other_types_and_a_missing_one_are_415_naming_json(content_type: str | None) -> None:
    with pytest.raises(UnsupportedMediaTypeError, match="application/json") as refused:
        check_body(b'{"a": 1}', content_type, JSON_ONLY)
    assert refused.value.status == 415 and refused.value.extra["accepted"] == ["application/json"]


def test_json_in_another_charset_is_415() -> None:
    with pytest.raises(UnsupportedMediaTypeError, match="UTF-8"):
        check_body(b'{"a": 1}', "application/json; charset=latin-1", JSON_ONLY)


def test_an_empty_body_passes_whatever_its_type() -> None:
    check_body(b"", None, JSON_ONLY)
    check_body(b"", "text/plain", JSON_ONLY)


def test_invalid_utf8_is_400_naming_the_byte() -> None:
    with pytest.raises(MalformedBodyError, match="byte 7"):
        check_body(b'{"a": "\xff"}', "application/json", JSON_ONLY)
    with pytest.raises(MalformedBodyError):
        check_body(b"token=\xc3", "application/x-www-form-urlencoded", {FORM_BODY_TYPE})


def test_loads_json_checks_before_parsing() -> None:
    assert loads_json(b'{"a": [1]}') == {"a": [1]}
    with pytest.raises(MalformedBodyError):
        loads_json(b"[" * 100_000)
    with pytest.raises(MalformedBodyError):
        loads_json(b'"\xff"')
    with pytest.raises(ValueError):
        loads_json(b"{not json")


class Item(BaseModel):
    name: str


class BodiesService(Service):
    """A model route, a raw JSON route and a form route, as services declare them."""

    name = "bodies"

    def routes(self, app: FastAPI) -> None:
        @app.post("/v1/items")
        async def add(item: Item) -> dict[str, str]:
            return {"name": item.name}

        @app.post(
            "/v1/raw",
            openapi_extra={
                "requestBody": {"content": {"application/json": {"schema": {"type": "object"}}}}
            },
        )
        async def raw(request: Request) -> dict[str, Any]:
            return {"got": loads_json(await request.body())}

        @app.post("/ui/form", include_in_schema=False, openapi_extra=FORM_BODY)
        async def form(request: Request) -> dict[str, Any]:
            return {"got": parse_qs((await request.body()).decode())}

        @app.post("/v1/nobody")
        async def nobody() -> dict[str, str]:
            return {"ok": "yes"}


@pytest.fixture
async def bodies(
    make_settings: Callable[..., ChorusSettings],
) -> AsyncIterator[httpx.AsyncClient]:
    service = BodiesService(make_settings())
    async with serve_in_process(service) as url, httpx.AsyncClient(base_url=url) as client:
        yield client


async def test_each_route_takes_its_own_types(bodies: httpx.AsyncClient) -> None:
    ok = await bodies.post("/v1/items", json={"name": "a"})
    assert ok.status_code == 200 and ok.json() == {"name": "a"}
    raw = await bodies.post(
        "/v1/raw", content=b'{"a": 1}', headers={"content-type": "application/json; charset=utf-8"}
    )
    assert raw.status_code == 200 and raw.json() == {"got": {"a": 1}}
    form = await bodies.post("/ui/form", data={"token": "t ö"})
    assert form.status_code == 200 and form.json() == {"got": {"token": ["t ö"]}}
    # a route that takes no body ignores one, whatever it is
    ignored = await bodies.post("/v1/nobody", content=b"\xff[[[", headers={"content-type": "x/y"})
    assert ignored.status_code == 200


@pytest.mark.parametrize("path", ["/v1/items", "/v1/raw", "/ui/form"])
async def test_bad_bodies_are_refused_before_the_route(
    bodies: httpx.AsyncClient, path: str
) -> None:
    form = path.startswith("/ui/")
    right = "application/x-www-form-urlencoded" if form else "application/json"
    wrong = "application/json" if form else "text/plain"
    refused = await bodies.post(path, content=b"{}", headers={"content-type": wrong})
    assert refused.status_code == 415, refused.text
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert right in refused.json()["detail"] and refused.json()["accepted"] == [right]
    bad = await bodies.post(path, content=b"a=\xff\xfe", headers={"content-type": right})
    assert bad.status_code == 400 and bad.json()["code"] == "body_malformed", bad.text
    if not form:
        deep = await bodies.post(path, content=b"[" * 100_000, headers={"content-type": right})
        assert deep.status_code == 400 and "nests more than" in deep.json()["detail"]
    assert (await bodies.get("/health/ready")).status_code == 200


async def test_415_is_documented_on_routes_with_a_body(bodies: httpx.AsyncClient) -> None:
    paths = (await bodies.get("/openapi.json")).json()["paths"]
    for path in ("/v1/items", "/v1/raw"):
        assert "415" in paths[path]["post"]["responses"], path
    assert "415" not in paths["/v1/nobody"]["post"]["responses"]
