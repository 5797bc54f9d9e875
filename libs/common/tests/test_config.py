import subprocess
import sys

import pytest

from chorus_common.config import ChorusSettings, load_settings
from chorus_common.errors import ConfigError


def test_defaults_load(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHORUS_HTTP_PORT", "9123")
    settings = load_settings(ChorusSettings)
    assert settings.http_port == 9123
    assert settings.max_message_bytes == 1024 * 1024


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("CHORUS_HTTP_PORT", "eighty", "CHORUS_HTTP_PORT='eighty'"),
        ("CHORUS_HTTP_PORT", "70000", "less than or equal to 65535"),
        ("CHORUS_JS_REPLICAS", "0", "CHORUS_JS_REPLICAS"),
        ("CHORUS_LOG_LEVEL", "LOUD", "CHORUS_LOG_LEVEL='LOUD'"),
        ("CHORUS_NODE_ID", "has space", "CHORUS_NODE_ID"),
    ],
)
def test_bad_value_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, expected: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as info:
        load_settings(ChorusSettings)
    message = info.value.detail
    assert expected in message
    assert "\n" not in message


def test_secret_values_are_not_echoed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHORUS_HEALTH_INTERVAL_SECONDS", "-1")
    monkeypatch.setenv("CHORUS_ADMIN_TOKEN", "s3cr3t-value")
    with pytest.raises(ConfigError) as info:
        load_settings(ChorusSettings)
    assert "s3cr3t-value" not in info.value.detail


def test_service_process_exits_with_one_line_message() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "chorus_election"],
        env={"CHORUS_HTTP_PORT": "not-a-port", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "CHORUS_HTTP_PORT='not-a-port'" in lines[0]
    assert "Traceback" not in result.stderr
