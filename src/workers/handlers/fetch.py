"""A guarded HTTP(S) download for URLs that job payloads name (server-side request forgery).

A payload's URL is untrusted: it could point the worker at the cloud metadata
service, the database, or anything else on the private network. So:

- only `http` and `https`;
- the host is resolved here, and every address it resolves to must be public
  (not private, loopback, link-local, multicast, reserved or unspecified) unless
  `FETCH_ALLOW_PRIVATE=1` or the address is in `FETCH_ALLOWED_NETWORKS`;
- the connection goes to the vetted address itself, with the original Host header
  and TLS server name, so a second DNS answer cannot swap in another address
  (DNS rebinding);
- redirects are followed by hand, at most `FETCH_MAX_REDIRECTS`, each target vetted again;
- the body is capped at `FETCH_MAX_BYTES` (a larger Content-Length is refused before
  reading; a body without one is read in chunks and dropped once it passes the cap);
- the whole download, redirects included, has one time limit (`FETCH_TIMEOUT_SECONDS`).

Refusals are `Permanent` (the same URL will be refused again); network failures,
timeouts and 5xx/408/429 answers are `Retryable`, after the answer's `Retry-After`
when it has one (`Retryable(after=)`: the job's next attempt waits exactly that).
"""

from __future__ import annotations

import asyncio
import email.utils
import ipaddress
import socket
import ssl
from datetime import UTC, datetime

import httpx
import msgspec

from ledger import jobtypes
from workers.handlers import settings as handler_settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_RETRYABLE_STATUS = frozenset({408, 425, 429})


class Download(msgspec.Struct, frozen=True, kw_only=True):
    url: str
    content: bytes
    content_type: str | None


def refusal(ip: IPAddress) -> str | None:
    """Why a connection to `ip` is refused by default, or None for a public address."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    checks = (
        ("loopback", ip.is_loopback),
        ("link-local", ip.is_link_local),
        ("multicast", ip.is_multicast),
        ("unspecified", ip.is_unspecified),
        ("reserved", ip.is_reserved),
        ("private", ip.is_private),
        ("not globally routable", not ip.is_global),
    )
    for reason, hit in checks:
        if hit:
            return reason
    return None


def allowed(ip: IPAddress, config: handler_settings.FetchSettings) -> str | None:
    """None when the configuration lets the worker connect to `ip`, else the reason it may not."""
    reason = refusal(ip)
    if reason is None or config.allow_private:
        return None
    plain = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped else ip
    if any(plain in network for network in config.allowed_networks):
        return None
    return reason


async def vet_host(host: str, port: int, config: handler_settings.FetchSettings) -> IPAddress:
    """The address to connect to for `host`: every address it resolves to must be allowed."""
    try:
        literal: IPAddress | None = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None:
        addresses = [literal]
    else:
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(
                host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
            )
        except socket.gaierror as exc:
            raise jobtypes.Retryable(f"cannot resolve {host!r}: {exc.strerror}") from exc
        addresses = [ipaddress.ip_address(info[4][0]) for info in infos]
        if not addresses:
            raise jobtypes.Retryable(f"{host!r} resolves to no address")
    for address in addresses:
        reason = allowed(address, config)
        if reason is not None:
            raise jobtypes.Permanent(
                f"refused to fetch from {host!r}: {address} is a {reason} address"
                " (set FETCH_ALLOW_PRIVATE=1 or FETCH_ALLOWED_NETWORKS to allow it)"
            )
    return addresses[0]


async def download(url: str, config: handler_settings.FetchSettings) -> Download:
    """GET `url` under the guards above; the body, the final URL and its content type."""
    try:
        async with asyncio.timeout(config.timeout_seconds):
            return await _download(url, config)
    except TimeoutError:
        raise jobtypes.Retryable(
            f"download of {url} did not finish within {config.timeout_seconds:g} s"
        ) from None


async def _download(url: str, config: handler_settings.FetchSettings) -> Download:
    verify: ssl.SSLContext | bool = True
    if config.ca_file is not None:
        verify = ssl.create_default_context(cafile=config.ca_file)
    async with httpx.AsyncClient(
        follow_redirects=False, trust_env=False, timeout=config.timeout_seconds, verify=verify
    ) as client:
        current = _parse(url)
        for _ in range(config.max_redirects + 1):
            response = await _send(client, current, config)
            try:
                if response.status_code in _REDIRECTS:
                    location = response.headers.get("location")
                    if not location:
                        raise jobtypes.Permanent(
                            f"{current} answered {response.status_code} without a Location"
                        )
                    current = _parse(str(current.join(location)))
                    continue
                _check_status(current, response)
                content = await _read_capped(current, response, config.max_bytes)
                return Download(
                    url=str(current),
                    content=content,
                    content_type=response.headers.get("content-type"),
                )
            finally:
                await response.aclose()
    raise jobtypes.Permanent(f"{url} redirected more than {config.max_redirects} times")


def _parse(url: str) -> httpx.URL:
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise jobtypes.Permanent(f"invalid URL {url!r}: {exc}") from exc
    if parsed.scheme not in ("http", "https"):
        raise jobtypes.Permanent(f"only http and https URLs are fetched, not {parsed.scheme!r}")
    if not parsed.host:
        raise jobtypes.Permanent(f"URL {url!r} has no host")
    return parsed


async def _send(
    client: httpx.AsyncClient, url: httpx.URL, config: handler_settings.FetchSettings
) -> httpx.Response:
    port = url.port or (443 if url.scheme == "https" else 80)
    address = await vet_host(url.host, port, config)
    # Connect to the vetted address; keep the name for the Host header and TLS (SNI and
    # certificate check), so the name is never resolved a second time.
    pinned = url.copy_with(host=str(address))
    extensions = {"sni_hostname": url.host} if url.scheme == "https" else {}
    request = client.build_request(
        "GET",
        pinned,
        headers={"Host": url.netloc.decode("ascii"), "Accept-Encoding": "identity"},
        extensions=extensions,
    )
    try:
        return await client.send(request, stream=True)
    except httpx.TimeoutException as exc:
        raise jobtypes.Retryable(f"timed out fetching {url}: {exc}") from exc
    except httpx.TransportError as exc:
        raise jobtypes.Retryable(f"cannot fetch {url}: {exc}") from exc


def _check_status(url: httpx.URL, response: httpx.Response) -> None:
    status = response.status_code
    if 200 <= status < 300:
        return
    message = f"{url} answered HTTP {status}"
    if status >= 500 or status in _RETRYABLE_STATUS:
        after = retry_after(response.headers.get("retry-after"))
        if after is not None:
            raise jobtypes.Retryable(f"{message}, retry after {after:g} s", after=after)
        raise jobtypes.Retryable(message)
    raise jobtypes.Permanent(message)


def retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """An HTTP `Retry-After` in seconds from now: delay-seconds or an HTTP-date (RFC 9110
    10.2.3); None when absent or unreadable (the retry policy's backoff then)."""
    if value is None:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


async def _read_capped(url: httpx.URL, response: httpx.Response, max_bytes: int) -> bytes:
    declared = response.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise jobtypes.Permanent(
            f"{url} is {int(declared)} bytes, more than the limit of {max_bytes} (FETCH_MAX_BYTES)"
        )
    body = bytearray()
    try:
        async for chunk in response.aiter_bytes():
            body += chunk
            if len(body) > max_bytes:
                raise jobtypes.Permanent(
                    f"{url} sent more than the limit of {max_bytes} bytes (FETCH_MAX_BYTES)"
                )
    except httpx.TimeoutException as exc:
        raise jobtypes.Retryable(f"timed out reading {url}: {exc}") from exc
    except httpx.TransportError as exc:
        raise jobtypes.Retryable(f"connection lost reading {url}: {exc}") from exc
    return bytes(body)
