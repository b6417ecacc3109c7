"""Every bad credential is refused with the right status, a challenge, and nothing written."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import jwt
import pytest
import pytest_asyncio
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from ledger import auth, jobtypes
from service import app as app_module
from tests.conftest import Databases
from tests.http.conftest import running

ISSUER = "https://idp.example.test"
AUDIENCE = "job-ledger"
BODY = {"type": "noop", "payload": {}, "priority": "normal"}


def _pem_private(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _pem_public(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


IDP_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
IDP_PUBLIC = _pem_public(IDP_KEY)


def claims(**changes: Any) -> dict[str, Any]:
    now = datetime.now(UTC)
    base: dict[str, Any] = {
        "sub": "alice",
        "scope": "jobs:write jobs:read",
        "iss": ISSUER,
        "aud": AUDIENCE,
        "iat": now,
        "exp": now + timedelta(minutes=5),
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


def rs256(payload: dict[str, Any], key: rsa.RSAPrivateKey = IDP_KEY) -> str:
    return jwt.encode(payload, _pem_private(key), algorithm="RS256")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _segments(header: dict[str, Any], payload: dict[str, Any]) -> str:
    encoded = {k: int(v.timestamp()) if isinstance(v, datetime) else v for k, v in payload.items()}
    return f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(encoded).encode())}"


def alg_none(payload: dict[str, Any]) -> str:
    return _segments({"alg": "none", "typ": "JWT"}, payload) + "."


def hs256_with_public_key(payload: dict[str, Any]) -> str:
    """The classic confusion attack: HMAC "signed" with the verifier's public RSA key."""
    signing_input = _segments({"alg": "HS256", "typ": "JWT"}, payload)
    mac = hmac.new(IDP_PUBLIC.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(mac)}"


@pytest_asyncio.fixture(loop_scope="session")
async def idp_client(
    dbs: Databases, registry: jobtypes.Registry
) -> AsyncIterator[httpx.AsyncClient]:
    """The app trusting an identity provider's RS256 key, with issuer and audience checked."""
    config = auth.AuthConfig(
        algorithms=("RS256",), public_key=IDP_PUBLIC, issuer=ISSUER, audience=AUDIENCE
    )
    app = app_module.create_app(dbs.app, auth_config=config, registry=registry, pool_size=2)
    async with running(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield http


ago = datetime.now(UTC) - timedelta(minutes=10)
later = datetime.now(UTC) + timedelta(minutes=10)

Case = Callable[[], dict[str, str]]
REFUSED: dict[str, tuple[Case, int]] = {
    "no token": (lambda: {}, 401),
    "not a bearer scheme": (lambda: {"Authorization": "Basic YWxpY2U6cHc="}, 401),
    "malformed": (lambda: {"Authorization": "Bearer not.a.jwt"}, 401),
    "expired": (lambda: {"Authorization": f"Bearer {rs256(claims(exp=ago, iat=ago))}"}, 401),
    "not yet valid": (lambda: {"Authorization": f"Bearer {rs256(claims(nbf=later))}"}, 401),
    "issued in the future": (lambda: {"Authorization": f"Bearer {rs256(claims(iat=later))}"}, 401),
    "wrong signature": (
        lambda: {"Authorization": f"Bearer {rs256(claims(), key=OTHER_KEY)}"},
        401,
    ),
    "alg none": (lambda: {"Authorization": f"Bearer {alg_none(claims())}"}, 401),
    "HS256 signed with the RS public key": (
        lambda: {"Authorization": f"Bearer {hs256_with_public_key(claims())}"},
        401,
    ),
    "wrong audience": (lambda: {"Authorization": f"Bearer {rs256(claims(aud='other'))}"}, 401),
    "wrong issuer": (lambda: {"Authorization": f"Bearer {rs256(claims(iss='https://evil'))}"}, 401),
    "no exp": (lambda: {"Authorization": f"Bearer {rs256(claims(exp=None))}"}, 401),
    "no sub": (lambda: {"Authorization": f"Bearer {rs256(claims(sub=None))}"}, 401),
    "missing scope": (
        lambda: {"Authorization": f"Bearer {rs256(claims(scope='jobs:read'))}"},
        403,
    ),
    "no scope at all": (lambda: {"Authorization": f"Bearer {rs256(claims(scope=None))}"}, 403),
}


@pytest.mark.parametrize("case", list(REFUSED), ids=list(REFUSED))
async def test_bad_credentials_are_refused_and_nothing_is_written(
    idp_client: httpx.AsyncClient, conn: asyncpg.Connection, case: str
) -> None:
    make, status = REFUSED[case]
    response = await idp_client.post("/api/v1/jobs", json=BODY, headers=make())

    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["status"] == status
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith('Bearer realm="job-ledger"')
    if status == 403:
        assert 'error="insufficient_scope"' in challenge and 'scope="jobs:write"' in challenge
    elif case != "no token":
        assert "error=" in challenge
    assert await conn.fetchval("SELECT count(*) FROM events") == 0


async def test_a_valid_identity_provider_token_is_accepted_and_its_subject_is_the_actor(
    idp_client: httpx.AsyncClient, conn: asyncpg.Connection
) -> None:
    token = rs256(claims(sub="svc-billing"))
    response = await idp_client.post(
        "/api/v1/jobs", json=BODY, headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 201, response.text
    assert await conn.fetchval("SELECT actor FROM events") == "svc-billing"


async def test_clock_skew_within_the_leeway_is_tolerated(
    idp_client: httpx.AsyncClient,
) -> None:
    just_expired = datetime.now(UTC) - timedelta(seconds=5)
    token = rs256(claims(exp=just_expired, iat=just_expired - timedelta(minutes=1)))
    response = await idp_client.get("/api/v1/jobs", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("method", "path", "scope"),
    [
        ("GET", "/api/v1/jobs", "jobs:read"),
        ("GET", "/api/v1/jobs/00000000-0000-0000-0000-000000000000", "jobs:read"),
        ("POST", "/api/v1/jobs/batch", "jobs:write"),
        ("POST", "/api/v1/jobs/00000000-0000-0000-0000-000000000000/cancel", "jobs:cancel"),
        ("POST", "/api/v1/jobs/00000000-0000-0000-0000-000000000000/retry", "jobs:write"),
        ("POST", "/api/v1/jobs/retry", "jobs:write"),
        ("POST", "/api/v1/jobs/cancel", "jobs:cancel"),
    ],
)
async def test_every_api_route_needs_a_token_and_its_scope(
    client: httpx.AsyncClient, bearer: Any, method: str, path: str, scope: str
) -> None:
    anonymous = await client.request(method, path)
    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"] == 'Bearer realm="job-ledger"'
    others = [s for s in ("jobs:write", "jobs:read", "jobs:cancel", "audit:read") if s != scope]
    lacking = await client.request(method, path, headers=bearer(*others))
    assert lacking.status_code == 403
    allowed = await client.request(method, path, headers=bearer(scope))
    assert allowed.status_code not in (401, 403)
    admin = await client.request(method, path, headers=bearer("admin"))
    assert admin.status_code not in (401, 403)


async def test_an_es256_public_key_verifies_its_tokens(
    dbs: Databases, registry: jobtypes.Registry
) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    settings_config = auth.AuthConfig(algorithms=("ES256",), public_key=_pem_public(key))
    token = jwt.encode(claims(aud=None, iss=None), _pem_private(key), algorithm="ES256")
    principal = settings_config.decode(token)
    assert principal.subject == "alice"
    with pytest.raises(Exception, match="not accepted"):
        settings_config.decode(rs256(claims(aud=None, iss=None)))
