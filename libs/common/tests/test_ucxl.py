import pytest
from hypothesis import given
from hypothesis import strategies as st

from chorus_common.errors import UcxlAddressError
from chorus_common.ucxl import Temporal, UcxlAddress

EXAMPLE = "ucxl://gpt4:architect@chorus:v2-migration/*^/decisions/x.json"


def test_spec_example() -> None:
    a = UcxlAddress.parse(EXAMPLE)
    assert (a.agent, a.role, a.project, a.task) == ("gpt4", "architect", "chorus", "v2-migration")
    assert a.temporal == Temporal("latest") and a.path == "decisions/x.json"
    assert str(a) == EXAMPLE and len(a.key()) == 32
    assert a.prefix() == "ucxl://gpt4:architect@chorus:v2-migration/"


@pytest.mark.parametrize(
    ("segment", "kind", "n"),
    [
        ("*^", "latest", None),
        ("*~", "any", None),
        ("*~7", "version", 7),
        ("~~2", "back", 2),
        ("^^3", "forward", 3),
    ],
)
def test_temporal_forms(segment: str, kind: str, n: int | None) -> None:
    text = f"ucxl://a:b@c:d/{segment}/p"
    a = UcxlAddress.parse(text)
    assert a.temporal == Temporal(kind, n)  # type: ignore[arg-type]
    assert str(a) == text


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("http://a:b@c:d/*^/", "ucxl://"),
        ("ucxl://a@c:d/*^/", "agent:role"),
        ("ucxl://a:b@c/*^/", "project:task"),
        ("ucxl://a:b@c:d", "temporal"),
        ("ucxl://a:b@c:d/^/x", "temporal segment"),
        ("ucxl://a!:b@c:d/*^/x", "agent 'a!'"),
        ("ucxl://a:b@c d:e/*^/x", "project 'c d'"),
        ("ucxl://a:b@c:d/*^/x y", "path"),
        ("ucxl://a:b@c:d/*^/../x", "'..'"),
    ],
)
def test_bad_addresses_name_the_part(text: str, names: str) -> None:
    with pytest.raises(UcxlAddressError) as info:
        UcxlAddress.parse(text)
    assert names in info.value.detail


def test_any_wildcard_matching() -> None:
    pattern = UcxlAddress.parse("ucxl://any:architect@chorus:any/*~/decisions")
    assert pattern.matches(UcxlAddress.parse(EXAMPLE))
    assert not pattern.matches(UcxlAddress.parse("ucxl://gpt4:dev@chorus:x/*^/decisions/x.json"))


component = st.from_regex(r"[a-zA-Z0-9_\-]{1,12}", fullmatch=True)


@given(
    agent=component,
    role=component,
    project=component,
    task=component,
    temporal=st.sampled_from(["*^", "*~", "*~3", "~~1", "^^9"]),
    path=st.from_regex(r"[a-z0-9_\-]{1,8}(/[a-z0-9_\-\.]{1,8}){0,3}", fullmatch=True),
)
def test_round_trip(
    agent: str, role: str, project: str, task: str, temporal: str, path: str
) -> None:
    text = f"ucxl://{agent}:{role}@{project}:{task}/{temporal}/{path}"
    assert str(UcxlAddress.parse(text)) == text
