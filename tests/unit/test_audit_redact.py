"""Audit redaction and settings: what never reaches the log, and how the env is read."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from corral.server.audit import AuditSettings, redact_body, redact_headers


def test_credential_headers_are_dropped_in_any_case() -> None:
    """Cookie, Authorization and Set-Cookie vanish whatever their letter case; others stay."""
    headers = [
        ("cookie", "R_SESS=abc"),
        ("AUTHORIZATION", "Bearer token-x:secret"),
        ("Set-Cookie", "R_SESS=abc; Secure"),
        ("content-type", "application/json"),
        ("x-forwarded-for", "10.0.0.1"),
        ("X-Forwarded-For", "10.0.0.2"),
    ]
    assert redact_headers(headers) == {
        "Content-Type": ["application/json"],
        "X-Forwarded-For": ["10.0.0.1", "10.0.0.2"],
    }


def test_secret_json_keys_are_redacted_at_any_depth() -> None:
    """password/token/kubeconfig keys (any case, inside other names) lose their values."""
    body = {
        "username": "admin",
        "Password": "s3cret",
        "nested": {"currentPassword": "a", "list": [{"TOKEN": "t", "keep": 1}]},
        "kubeConfig": {"anything": "x"},
        "tokens": ["a", "b"],
    }
    got = redact_body(json.dumps(body).encode(), "application/json; charset=utf-8")
    assert got == {
        "username": "admin",
        "Password": "[redacted]",
        "nested": {"currentPassword": "[redacted]", "list": [{"TOKEN": "[redacted]", "keep": 1}]},
        "kubeConfig": "[redacted]",
        "tokens": "[redacted]",
    }


def test_unparseable_json_is_scrubbed_text() -> None:
    """A truncated JSON body is kept as text with secret values still replaced."""
    text = '{"username":"admin","password":"hunter2","token": "abc\\"d", "x": [1, 2'
    got = redact_body(text.encode(), "application/json")
    assert isinstance(got, str)
    assert "hunter2" not in got and "abc" not in got
    assert '"password":"[redacted]"' in got and '"username":"admin"' in got


def test_form_secrets_are_redacted() -> None:
    """Form-encoded password fields are redacted too."""
    got = redact_body(b"user=admin&password=hunter2", "application/x-www-form-urlencoded")
    assert got == "user=admin&password=%5Bredacted%5D"


def test_plain_text_is_a_string_and_binary_is_omitted() -> None:
    """Text bodies become strings (bad utf-8 replaced); binary bodies are left out."""
    assert redact_body(b"pong \xff", "text/plain") == "pong \ufffd"
    assert redact_body(b"\x00\x01", "application/octet-stream") is None
    assert redact_body(b"", "application/json") is None


def test_settings_from_env_reads_the_rancher_audit_variables(tmp_path: Path) -> None:
    """Rancher's AUDIT_LEVEL and AUDIT_LOG_* variables set level, path, age, backups and size."""
    env = {
        "AUDIT_LEVEL": "1",
        "AUDIT_LOG_PATH": str(tmp_path / "a.log"),
        "AUDIT_LOG_MAXAGE": "20",
        "AUDIT_LOG_MAXBACKUP": "20",
        "AUDIT_LOG_MAXSIZE": "100",
    }
    assert AuditSettings.from_env(env) == AuditSettings(1, tmp_path / "a.log", 20, 20, 100)


def test_settings_defaults_and_directory_path(tmp_path: Path) -> None:
    """Unset variables keep the defaults; a path ending in / names a directory."""
    assert AuditSettings.from_env({}) == AuditSettings()
    assert AuditSettings().level == 0 and not AuditSettings().enabled
    got = AuditSettings.from_env({"AUDIT_LOG_PATH": f"{tmp_path}/logs/"})
    assert got.path == tmp_path / "logs" / "corral-api-audit.log"


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("AUDIT_LEVEL", "4", "AUDIT_LEVEL='4' is not valid: use a whole number 0-3"),
        ("AUDIT_LEVEL", "one", "AUDIT_LEVEL='one' is not valid"),
        ("AUDIT_LOG_MAXAGE", "-1", "AUDIT_LOG_MAXAGE='-1' is not valid: use a whole number 0-"),
        ("AUDIT_LOG_MAXBACKUP", "1.5", "AUDIT_LOG_MAXBACKUP='1.5'"),
        ("AUDIT_LOG_MAXSIZE", "0", "AUDIT_LOG_MAXSIZE='0' is not valid: use a whole number 1-"),
    ],
)
def test_bad_env_values_name_the_variable_and_range(name: str, value: str, expected: str) -> None:
    """A bad value raises ValueError naming the variable and what is accepted."""
    with pytest.raises(ValueError) as info:
        AuditSettings.from_env({name: value})
    assert expected in str(info.value)


def test_settings_built_in_code_are_validated_too() -> None:
    """Constructing settings directly (the CLI flags path) applies the same ranges."""
    with pytest.raises(ValueError, match="AUDIT_LEVEL=7"):
        AuditSettings(level=7)


def test_escaped_secret_key_is_still_redacted() -> None:
    """A key spelled with \\u escapes ("pass\\u0077ord") is decoded and redacted."""
    assert redact_body(b'{"pass\\u0077ord": "x", "a": 1}', "application/json") == {
        "password": "[redacted]", "a": 1
    }
