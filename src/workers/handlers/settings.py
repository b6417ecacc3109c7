"""The handlers' settings, read from the environment when a job runs.

They are read per run (cheap) rather than once at import, so a process picks up
the environment it was started with and tests can set them per test.

| variable | default | meaning |
| --- | --- | --- |
| `SMTP_URL` | unset | `smtp://`, `smtp+starttls://` or `smtps://` `[user:password@]host[:port]` |
| `SMTP_FROM` | `job-ledger@localhost` | sender when the payload names none |
| `SMTP_TLS_VERIFY` | `1` | `0` accepts any certificate (testing only) |
| `SMTP_CA_FILE` | system store | PEM bundle of trusted certificate authorities |
| `SMTP_TIMEOUT_SECONDS` | `30` | per SMTP operation |
| `FETCH_ALLOW_PRIVATE` | `0` | `1` lets downloads reach private, loopback and link-local addresses |
| `FETCH_ALLOWED_NETWORKS` | empty | comma-separated CIDRs allowed despite being private (e.g. `10.1.0.0/16`) |
| `FETCH_MAX_BYTES` | `20971520` (20 MiB) | largest download |
| `FETCH_TIMEOUT_SECONDS` | `30` | whole download, redirects included |
| `FETCH_MAX_REDIRECTS` | `3` | redirects followed, each target vetted again |
| `FETCH_CA_FILE` | system store | PEM bundle of certificate authorities trusted for https downloads |
| `IMAGE_MAX_PIXELS` | `50000000` | largest source image (width × height) decoded |
| `IMAGE_DECODE_BUDGET_PIXELS` | `50000000` | decoded pixels all image jobs of one process may hold at once |
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping

import msgspec

from ledger import errors

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class FetchSettings(msgspec.Struct, frozen=True, kw_only=True):
    allow_private: bool = False
    allowed_networks: tuple[IPNetwork, ...] = ()
    max_bytes: int = 20 * 1024 * 1024
    timeout_seconds: float = 30.0
    max_redirects: int = 3
    ca_file: str | None = None


class SmtpSettings(msgspec.Struct, frozen=True, kw_only=True):
    url: str | None = None
    default_from: str = "job-ledger@localhost"
    tls_verify: bool = True
    ca_file: str | None = None
    timeout_seconds: float = 30.0


class HandlerSettings(msgspec.Struct, frozen=True, kw_only=True):
    fetch: FetchSettings = msgspec.field(default_factory=FetchSettings)
    smtp: SmtpSettings = msgspec.field(default_factory=SmtpSettings)
    image_max_pixels: int = 50_000_000
    image_decode_budget_pixels: int = 50_000_000


def _text(env: Mapping[str, str], name: str) -> str | None:
    return env.get(name) or None


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = _text(env, name)
    if raw is None:
        return default
    if raw.lower() in ("1", "true", "yes", "on"):
        return True
    if raw.lower() in ("0", "false", "no", "off"):
        return False
    raise errors.ConfigError(f"{name} must be 1 or 0, got {raw!r}")


def _number(env: Mapping[str, str], name: str, default: float, *, integer: bool) -> float:
    raw = _text(env, name)
    if raw is None:
        return default
    try:
        value = int(raw) if integer else float(raw)
    except ValueError:
        kind = "an integer" if integer else "a number"
        raise errors.ConfigError(f"{name} must be {kind}, got {raw!r}") from None
    if value <= 0:
        raise errors.ConfigError(f"{name} must be positive, got {raw!r}")
    return value


def _networks(env: Mapping[str, str], name: str) -> tuple[IPNetwork, ...]:
    raw = _text(env, name) or ""
    networks: list[IPNetwork] = []
    for item in raw.split(","):
        item = item.strip()
        if not item:
            continue
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise errors.ConfigError(f"{name}: {item!r} is not a network (CIDR)") from None
    return tuple(networks)


def from_env(env: Mapping[str, str] | None = None) -> HandlerSettings:
    """The handlers' settings; empty variables count as unset."""
    env = os.environ if env is None else env
    max_redirects = _text(env, "FETCH_MAX_REDIRECTS")
    return HandlerSettings(
        fetch=FetchSettings(
            allow_private=_bool(env, "FETCH_ALLOW_PRIVATE", False),
            allowed_networks=_networks(env, "FETCH_ALLOWED_NETWORKS"),
            max_bytes=int(_number(env, "FETCH_MAX_BYTES", 20 * 1024 * 1024, integer=True)),
            timeout_seconds=_number(env, "FETCH_TIMEOUT_SECONDS", 30.0, integer=False),
            max_redirects=0
            if max_redirects == "0"
            else int(_number(env, "FETCH_MAX_REDIRECTS", 3, integer=True)),
            ca_file=_text(env, "FETCH_CA_FILE"),
        ),
        smtp=SmtpSettings(
            url=_text(env, "SMTP_URL"),
            default_from=_text(env, "SMTP_FROM") or "job-ledger@localhost",
            tls_verify=_bool(env, "SMTP_TLS_VERIFY", True),
            ca_file=_text(env, "SMTP_CA_FILE"),
            timeout_seconds=_number(env, "SMTP_TIMEOUT_SECONDS", 30.0, integer=False),
        ),
        image_max_pixels=int(_number(env, "IMAGE_MAX_PIXELS", 50_000_000, integer=True)),
        image_decode_budget_pixels=int(
            _number(env, "IMAGE_DECODE_BUDGET_PIXELS", 50_000_000, integer=True)
        ),
    )
