"""The handlers' settings: defaults, parsing, and a clear error for each bad value."""

from __future__ import annotations

import ipaddress

import pytest

from ledger import errors
from workers.handlers import settings


def test_defaults_refuse_private_addresses_and_verify_tls() -> None:
    config = settings.from_env({})
    assert config.fetch == settings.FetchSettings()
    assert (config.fetch.allow_private, config.fetch.allowed_networks) == (False, ())
    assert (config.smtp.url, config.smtp.tls_verify) == (None, True)
    assert config.image_max_pixels == 50_000_000


def test_values_are_read_from_the_environment() -> None:
    config = settings.from_env(
        {
            "FETCH_ALLOW_PRIVATE": "yes",
            "FETCH_ALLOWED_NETWORKS": "10.1.0.0/16, fd00::/8",
            "FETCH_MAX_BYTES": "1024",
            "FETCH_TIMEOUT_SECONDS": "2.5",
            "FETCH_MAX_REDIRECTS": "0",
            "SMTP_URL": "smtps://mail.test",
            "SMTP_TLS_VERIFY": "0",
            "IMAGE_MAX_PIXELS": "4096",
        }
    )
    assert config.fetch.allow_private is True
    assert config.fetch.allowed_networks == (
        ipaddress.ip_network("10.1.0.0/16"),
        ipaddress.ip_network("fd00::/8"),
    )
    assert (config.fetch.max_bytes, config.fetch.timeout_seconds) == (1024, 2.5)
    assert config.fetch.max_redirects == 0
    assert (config.smtp.url, config.smtp.tls_verify) == ("smtps://mail.test", False)
    assert config.image_max_pixels == 4096


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("FETCH_ALLOW_PRIVATE", "maybe"),
        ("FETCH_ALLOWED_NETWORKS", "10.0.0.0/33"),
        ("FETCH_MAX_BYTES", "lots"),
        ("FETCH_MAX_BYTES", "-1"),
        ("FETCH_TIMEOUT_SECONDS", "0"),
        ("SMTP_TLS_VERIFY", "2"),
        ("IMAGE_MAX_PIXELS", "1.5"),
    ],
)
def test_a_bad_value_is_a_config_error_naming_the_variable(name: str, value: str) -> None:
    with pytest.raises(errors.ConfigError, match=name):
        settings.from_env({name: value})
