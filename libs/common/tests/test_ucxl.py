"""UCXL addresses: the spec example and every temporal form round-trip; bad parts are named."""

from typing import cast

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chorus_common.errors import UcxlAddressError
from chorus_common.ucxl import LATEST, Temporal, TemporalKind, UcxiVerb, UcxlAddress

EXAMPLE = "ucxl://gpt4:architect@chorus:v2-migration/*^/decisions/x.json"


def test_spec_example() -> None:
    a = UcxlAddress.parse(EXAMPLE)
    assert (a.agent, a.role, a.project, a.task) == ("gpt4", "architect", "chorus", "v2-migration")
    assert a.temporal == Temporal("latest") == LATEST and a.temporal.n is None
    assert a.path == "decisions/x.json"
    assert str(a) == EXAMPLE
    assert a.prefix() == "ucxl://gpt4:architect@chorus:v2-migration/"
    assert not a.is_pattern


@pytest.mark.parametrize(
    ("segment", "kind", "n"),
    [
        ("*^", "latest", None),
        ("*~", "any", None),
        ("*~7", "version", 7),
        ("*~0", "version", 0),
        ("~~2", "back", 2),
        ("^^3", "forward", 3),
        ("^^120", "forward", 120),
    ],
)
def test_temporal_forms(segment: str, kind: TemporalKind, n: int | None) -> None:
    text = f"ucxl://a:b@c:d/{segment}/p"
    a = UcxlAddress.parse(text)
    assert a.temporal == Temporal(kind, n)
    assert str(a) == text
    assert str(Temporal.parse(segment)) == segment


def test_key_is_a_32_byte_hash_of_the_canonical_address() -> None:
    a = UcxlAddress.parse(EXAMPLE)
    assert len(a.key()) == 32
    assert a.key() == UcxlAddress.parse(EXAMPLE).key()
    assert a.key() != a.with_temporal(Temporal("version", 1)).key()
    assert (
        UcxlAddress("gpt4", "architect", "chorus", "v2-migration", LATEST, "decisions/x.json") == a
    )


def test_address_without_a_path() -> None:
    a = UcxlAddress.parse("ucxl://a:b@c:d/*^/")
    assert a.path == "" and str(a) == "ucxl://a:b@c:d/*^/"
    # the slash after the temporal segment may be left off when there is no path
    assert UcxlAddress.parse("ucxl://a:b@c:d/*^") == a


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("http://a:b@c:d/*^/", "must start with ucxl://"),
        ("ucxl:/a:b@c:d/*^/", "must start with ucxl://"),
        ("ucxl://a:b/c:d/*^/", "agent:role@project:task"),
        ("ucxl://a@c:d/*^/", "must be agent:role"),
        ("ucxl://a:b@c/*^/", "must be project:task"),
        ("ucxl://a:b@c:d", "needs a temporal segment"),
        ("ucxl://a:b@c:d/", "needs a temporal segment"),
        ("ucxl://a!:b@c:d/*^/x", "agent 'a!' must match [a-zA-Z0-9_-]+ or 'any'"),
        ("ucxl://a:ar ch@c:d/*^/x", "role 'ar ch' must match [a-zA-Z0-9_-]+ or 'any'"),
        ("ucxl://a:b@c d:e/*^/x", "project 'c d' must match [a-zA-Z0-9_-]+ or 'any'"),
        ("ucxl://a:b@c:t.1/*^/x", "task 't.1' must match [a-zA-Z0-9_-]+ or 'any'"),
        ("ucxl://:b@c:d/*^/x", "agent '' must match"),
        ("ucxl://a:b:c@c:d/*^/x", "role 'b:c' must match"),
        ("ucxl://a:b@c:d/^/x", "temporal segment '^' must be *^ (latest)"),
        ("ucxl://a:b@c:d/*~x/p", "temporal segment '*~x'"),
        ("ucxl://a:b@c:d/~~/p", "temporal segment '~~'"),
        ("ucxl://a:b@c:d/*~007/p", "without leading zeros"),
        ("ucxl://a:b@c:d/*~٣/p", "temporal segment"),  # not an ASCII digit
        ("ucxl://a:b@c:d/latest/p", "temporal segment 'latest'"),
        ("ucxl://a:b@c:d/*^/x y", "path 'x y' may contain only"),
        ("ucxl://a:b@c:d/*^/x?q=1", "path 'x?q=1'"),
        ("ucxl://a:b@c:d/*^/../etc/passwd", "'..' segment"),
        ("ucxl://a:b@c:d/*^/docs/../../x", "'..' segment"),
        ("ucxl://a:b@c:d/*^/x\n", "path"),  # "$" in a regex would let the newline through
        ("ucxl://agent\n:b@c:d/*^/x", "agent"),
    ],
)
def test_bad_addresses_name_the_part(text: str, names: str) -> None:
    with pytest.raises(UcxlAddressError) as info:
        UcxlAddress.parse(text)
    assert names in info.value.detail
    assert info.value.status == 400 and info.value.code == "ucxl_address_invalid"


def test_dots_that_are_not_traversal_are_fine() -> None:
    a = UcxlAddress.parse("ucxl://a:b@c:d/*^/.well-known/x..y/v1.2.json")
    assert a.path == ".well-known/x..y/v1.2.json"


def test_direct_construction_validates_too() -> None:
    with pytest.raises(UcxlAddressError, match="role 'a b'"):
        UcxlAddress("a", "a b", "c", "d")
    with pytest.raises(UcxlAddressError, match="needs a whole number"):
        Temporal("version")
    with pytest.raises(UcxlAddressError, match="needs a whole number"):
        Temporal("back", -1)
    with pytest.raises(UcxlAddressError, match="takes no number"):
        Temporal("latest", 3)
    with pytest.raises(UcxlAddressError, match="must be latest, any"):
        Temporal(cast(TemporalKind, "newest"))


def test_any_wildcard_matching() -> None:
    pattern = UcxlAddress.parse("ucxl://any:architect@chorus:any/*~/decisions")
    assert pattern.is_pattern
    assert pattern.matches(UcxlAddress.parse(EXAMPLE))
    assert pattern.matches(UcxlAddress.parse("ucxl://x:architect@chorus:y/~~2/decisions"))
    assert not pattern.matches(UcxlAddress.parse("ucxl://gpt4:dev@chorus:x/*^/decisions/x.json"))
    assert not pattern.matches(UcxlAddress.parse("ucxl://gpt4:architect@other:x/*^/decisions"))
    # a path matches itself and what is below it, not a sibling sharing a prefix
    assert not pattern.matches(UcxlAddress.parse("ucxl://g:architect@chorus:x/*^/decisions-old/y"))
    everything = UcxlAddress.parse("ucxl://any:any@any:any/*~/")
    assert everything.matches(UcxlAddress.parse(EXAMPLE))


def test_temporal_must_match_unless_any() -> None:
    latest = UcxlAddress.parse("ucxl://a:b@c:d/*^/p")
    assert latest.matches(latest)
    assert not latest.matches(latest.with_temporal(Temporal("version", 2)))
    assert latest.with_temporal(Temporal("any")).matches(latest.with_temporal(Temporal("back", 1)))


def test_ucxi_verbs() -> None:
    assert [v.value for v in UcxiVerb] == [
        "GET",
        "PUT",
        "POST",
        "DELETE",
        "ANNOUNCE",
        "NAVIGATE",
        "QUERY",
        "SUBSCRIBE",
    ]
    assert UcxiVerb("ANNOUNCE") is UcxiVerb.ANNOUNCE


component = st.one_of(st.just("any"), st.from_regex(r"[a-zA-Z0-9_\-]{1,12}", fullmatch=True))
temporal = st.one_of(
    st.sampled_from(["*^", "*~"]),
    st.builds(lambda op, n: f"{op}{n}", st.sampled_from(["*~", "~~", "^^"]), st.integers(0, 10**9)),
)
path = st.one_of(
    st.just(""),
    st.from_regex(r"[a-zA-Z0-9_\-]{1,8}(/[a-zA-Z0-9_\-\.]{1,8}){0,4}/?", fullmatch=True).filter(
        lambda p: ".." not in p.split("/")
    ),
)


@given(
    agent=component,
    role=component,
    project=component,
    task=component,
    temporal=temporal,
    path=path,
)
def test_round_trip(
    agent: str, role: str, project: str, task: str, temporal: str, path: str
) -> None:
    text = f"ucxl://{agent}:{role}@{project}:{task}/{temporal}/{path}"
    address = UcxlAddress.parse(text)
    assert str(address) == text
    assert UcxlAddress.parse(str(address)) == address
    assert address.matches(address)
    assert address.prefix() == f"ucxl://{agent}:{role}@{project}:{task}/"


@given(st.text(max_size=80))
def test_parse_only_ever_raises_ucxl_address_error(text: str) -> None:
    for candidate in (text, "ucxl://" + text, f"ucxl://a:b@c:d/{text}"):
        try:
            address = UcxlAddress.parse(candidate)
        except UcxlAddressError:
            continue
        canonical = str(address)
        assert canonical in (candidate, candidate + "/")
        assert UcxlAddress.parse(canonical) == address
