"""Bearer-token authentication: verify JWTs, check scopes, mint development tokens.

Accepted algorithms are an explicit allow-list, and each algorithm family has its
own key: HMAC algorithms (HS*) verify with `JWT_SECRET` only, asymmetric ones
(RS*, PS*, ES*, EdDSA) with the configured public key only, so an HS256 token
"signed" with the public key never verifies, and `none` is never accepted.
`exp` and `sub` are required; `iss` and `aud` are checked (and required) when
configured; `nbf` and `iat` are checked when present, with a small leeway.

Scopes come from the token's space-separated `scope` claim (RFC 9068). The
`admin` scope grants every other one except `tenants:admin`: an admin acts within
its own tenant, and only `tenants:admin` may name another one (see `ledger.tenancy`).

The tenant comes from the claim `AuthConfig.tenant_claim` (`tenant` by default,
`JWT_TENANT_CLAIM`); a token without it has no tenant of its own (`Principal.tenant`
None), one whose claim is not a tenant id is refused.

The API verifies through a `TokenVerifier`: a token whose signature and claims
were verified once is remembered (keyed by its exact text, a bounded number of
them), so a client that sends the same token on every request skips the
signature check; the time checks (`exp`, `nbf`, `iat`, with the leeway) are
made again on every request, so an expired token is refused as before.

There is no default secret. On the embedded database, with no key configured,
a random secret is generated once into the data folder and kept there; with
`DATABASE_URL` set and no secret or public key, the service refuses to start.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import jwt
import msgspec
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from ledger import config, errors, tenancy

log = logging.getLogger(__name__)

SCOPES: Final = frozenset(
    {
        "jobs:write",
        "jobs:read",
        "jobs:cancel",
        "audit:read",
        "schedules:write",
        "webhooks:write",
        "admin",
        tenancy.ADMIN_SCOPE,
    }
)
ADMIN: Final = "admin"
NOT_GRANTED_BY_ADMIN: Final = frozenset({tenancy.ADMIN_SCOPE})
# Claims the service reads for itself: none of them can name the tenant.
RESERVED_CLAIMS: Final = frozenset({"sub", "scope", "iss", "aud", "exp", "nbf", "iat", "jti"})
HMAC_ALGORITHMS: Final = frozenset({"HS256", "HS384", "HS512"})
ASYMMETRIC_ALGORITHMS: Final = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
MIN_SECRET_BYTES: Final = 32
SECRET_FILE: Final = "jwt_secret"
TIME_CLAIMS: Final = ("exp", "nbf", "iat")
_BEARER = re.compile(r"^\s*bearer\s+(\S+)\s*$", re.IGNORECASE)
_DURATION = re.compile(r"^(\d+)\s*([smhd]?)$")


def bearer_token(authorization: str | None) -> str:
    """The token of an `Authorization: Bearer <jwt>` header, or Unauthorized."""
    if not authorization:
        raise errors.Unauthorized("missing bearer token", error=None)
    match = _BEARER.match(authorization)
    if match is None:
        raise errors.Unauthorized(
            "the Authorization header is not 'Bearer <token>'", error="invalid_request"
        )
    return match.group(1)


class Principal(msgspec.Struct, frozen=True, kw_only=True):
    """Who is calling (the token's `sub`, recorded as the actor), what they may do, and
    the tenant their token names (None: no tenant claim)."""

    subject: str
    scopes: frozenset[str]
    tenant: str | None = None

    def allows(self, scope: str) -> bool:
        """The token grants `scope`, itself or through `admin` (never `tenants:admin`)."""
        return scope in self.scopes or (ADMIN in self.scopes and scope not in NOT_GRANTED_BY_ADMIN)

    def require(self, scope: str) -> None:
        """Raise Forbidden unless the token grants `scope` (see `allows`)."""
        if not self.allows(scope):
            raise errors.Forbidden(scope)


class AuthConfig(msgspec.Struct, frozen=True, kw_only=True):
    """How tokens are verified (and, with a secret, minted)."""

    algorithms: tuple[str, ...]
    secret: str | None = None
    public_key: str | None = None  # PEM
    issuer: str | None = None
    audience: str | None = None
    leeway_seconds: float = 30.0
    tenant_claim: str = "tenant"  # the claim naming the token's tenant (JWT_TENANT_CLAIM)

    def __post_init__(self) -> None:
        if not self.tenant_claim or self.tenant_claim in RESERVED_CLAIMS:
            raise errors.ConfigError(
                f"JWT_TENANT_CLAIM cannot be {self.tenant_claim!r}: the service reads "
                f"{', '.join(sorted(RESERVED_CLAIMS))} for themselves"
            )
        if not self.algorithms:
            raise errors.ConfigError("no JWT algorithm is accepted (JWT_ALGORITHMS is empty)")
        for alg in self.algorithms:
            if alg in HMAC_ALGORITHMS:
                if self.secret is None:
                    raise errors.ConfigError(f"JWT algorithm {alg} needs JWT_SECRET")
            elif alg in ASYMMETRIC_ALGORITHMS:
                if self.public_key is None:
                    raise errors.ConfigError(f"JWT algorithm {alg} needs JWT_PUBLIC_KEY")
            else:
                raise errors.ConfigError(
                    f"JWT algorithm {alg!r} is not accepted; choose from "
                    f"{', '.join(sorted(HMAC_ALGORITHMS | ASYMMETRIC_ALGORITHMS))}"
                )
        if self.secret is not None and len(self.secret.encode()) < MIN_SECRET_BYTES:
            raise errors.ConfigError(f"JWT_SECRET must be at least {MIN_SECRET_BYTES} bytes long")

    def verify(self, authorization: str | None) -> Principal:
        """The principal of an `Authorization: Bearer <jwt>` header, or Unauthorized."""
        return self.decode(bearer_token(authorization))

    def decode(self, token: str) -> Principal:
        """The principal of a raw JWT, or Unauthorized saying why not."""
        return self.decode_with_window(token)[0]

    def decode_with_window(self, token: str) -> tuple[Principal, float, float]:
        """The principal of a raw JWT and the times (epoch seconds, leeway included) between
        which its time claims accept it: valid while `valid_from <= now < valid_until`."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise errors.Unauthorized(f"malformed token: {exc}") from None
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self.algorithms:
            raise errors.Unauthorized(f"token algorithm {alg!r} is not accepted")
        key = self.secret if alg in HMAC_ALGORITHMS else self.public_key
        assert key is not None  # __post_init__ guarantees a key per accepted algorithm
        required = ["exp", "sub"]
        if self.issuer is not None:
            required.append("iss")
        if self.audience is not None:
            required.append("aud")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[alg],
                issuer=self.issuer,
                audience=self.audience,
                leeway=self.leeway_seconds,
                options={"require": required},
            )
        except jwt.PyJWTError as exc:
            raise errors.Unauthorized(f"invalid token: {exc}") from None
        for claim in TIME_CLAIMS:
            # A NumericDate is a JSON number (RFC 7519 section 2); PyJWT also takes the
            # text "1700000000" for one.
            value = claims.get(claim)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, (int, float))
            ):
                raise errors.Unauthorized(f"invalid token: {claim!r} must be a number")
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject.strip():
            raise errors.Unauthorized("invalid token: 'sub' must be a non-empty string")
        scope = claims.get("scope", "")
        if not isinstance(scope, str):
            raise errors.Unauthorized("invalid token: 'scope' must be a space-separated string")
        tenant: str | None = None
        if self.tenant_claim in claims:  # present, even as null: it must be a tenant id
            try:
                tenant = tenancy.checked(claims[self.tenant_claim])
            except errors.InvalidTenant:
                # The value is not echoed: it would land in the WWW-Authenticate header.
                raise errors.Unauthorized(
                    f"invalid token: the {self.tenant_claim!r} claim must be a tenant id "
                    f"({errors.InvalidTenant.RULE})"
                ) from None
        principal = Principal(subject=subject, scopes=frozenset(scope.split()), tenant=tenant)
        # As PyJWT just checked them: refused once `exp <= now - leeway`, or while
        # `nbf` or `iat` is later than `now + leeway` (both are integers by now).
        starts = [int(claims[c]) for c in ("nbf", "iat") if c in claims]
        valid_from = max(starts) - self.leeway_seconds if starts else float("-inf")
        valid_until = int(claims["exp"]) + self.leeway_seconds
        return principal, valid_from, valid_until

    def mint(
        self,
        subject: str,
        scopes: list[str] | tuple[str, ...],
        *,
        ttl: timedelta = timedelta(hours=1),
        now: datetime | None = None,
        tenant: str | None = None,
    ) -> str:
        """A token for `subject` with `scopes` (and `tenant`, in the tenant claim, when
        given), signed with the secret (development, tests)."""
        if self.secret is None:
            raise errors.ConfigError(
                "cannot mint tokens without JWT_SECRET (tokens for a public key are "
                "issued by the identity provider holding its private key)"
            )
        unknown = sorted(set(scopes) - SCOPES)
        if unknown:
            raise errors.ConfigError(
                f"unknown scope(s) {', '.join(unknown)}; known: {', '.join(sorted(SCOPES))}"
            )
        issued = now or datetime.now(UTC)
        claims: dict[str, Any] = {
            "sub": subject,
            "scope": " ".join(scopes),
            "iat": issued,
            "nbf": issued,
            "exp": issued + ttl,
        }
        if self.issuer is not None:
            claims["iss"] = self.issuer
        if self.audience is not None:
            claims["aud"] = self.audience
        if tenant is not None:
            claims[self.tenant_claim] = tenancy.checked(tenant)
        alg = next((a for a in self.algorithms if a in HMAC_ALGORITHMS), "HS256")
        return jwt.encode(claims, self.secret, algorithm=alg)


DEFAULT_CACHED_TOKENS: Final = 1024


class _Verified(msgspec.Struct, frozen=True):
    principal: Principal
    valid_from: float
    valid_until: float


class TokenVerifier:
    """Verifies bearer tokens like `AuthConfig.verify`, remembering the ones that passed.

    A remembered token skips the signature and claim checks, never the clock: each
    request compares now with the token's `nbf`/`iat` and `exp` (leeway included), and
    a token outside that window is refused (and forgotten). Only tokens that passed
    the full verification are remembered, keyed by their exact text
    (so a changed byte is a different, unverified token), at most `size` of them (the
    oldest forgotten first). The cache belongs to one configuration: another secret,
    key, issuer or audience is another verifier with an empty cache.
    """

    def __init__(
        self,
        config: AuthConfig,
        *,
        size: int = DEFAULT_CACHED_TOKENS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if size < 0:
            raise ValueError("the token cache size cannot be negative")
        self.config = config
        self._size = size
        self._clock = clock
        self._verified: dict[str, _Verified] = {}

    def verify(self, authorization: str | None) -> Principal:
        """The principal of an `Authorization: Bearer <jwt>` header, or Unauthorized."""
        return self.decode(bearer_token(authorization))

    def decode(self, token: str) -> Principal:
        """The principal of a raw JWT, or Unauthorized saying why not."""
        known = self._verified.get(token)
        if known is None:
            known = _Verified(*self.config.decode_with_window(token))
            if self._size:
                while len(self._verified) >= self._size:
                    del self._verified[next(iter(self._verified))]
                self._verified[token] = known
        # Every time, remembered or not: the claims are the token's own (its exact text
        # is the key), so only the clock can move it out of its window.
        now = self._clock()
        if now >= known.valid_until:
            self._verified.pop(token, None)
            raise errors.Unauthorized("invalid token: Signature has expired")
        if now < known.valid_from:
            self._verified.pop(token, None)
            raise errors.Unauthorized("invalid token: The token is not yet valid")
        return known.principal

    def __len__(self) -> int:
        return len(self._verified)

    def __contains__(self, token: object) -> bool:
        return token in self._verified


def parse_duration(text: str) -> timedelta:
    """`90`, `90s`, `15m`, `1h`, `7d` as a timedelta."""
    match = _DURATION.match(text.strip())
    if match is None:
        raise errors.ConfigError(f"duration {text!r} is not like 90s, 15m, 1h or 7d")
    amount, unit = int(match.group(1)), match.group(2) or "s"
    seconds = amount * {"s": 1, "m": 60, "h": 3600, "d": 86400}[unit]
    if seconds <= 0:
        raise errors.ConfigError("a token's lifetime must be positive")
    return timedelta(seconds=seconds)


def load_or_create_secret(data_dir: Path) -> str:
    """The secret kept in the data folder, generated (readable by this user only) on first use."""
    path = data_dir / SECRET_FILE
    data_dir.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        secret = path.read_text("utf-8").strip()
        if len(secret.encode()) < MIN_SECRET_BYTES:
            raise errors.ConfigError(
                f"{path} holds a secret shorter than {MIN_SECRET_BYTES} bytes; remove it "
                "to have a new one generated"
            ) from None
        return secret
    secret = secrets.token_urlsafe(48)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(secret + "\n")
    log.info("generated a JWT secret in %s", path)
    return secret


def _public_key_pem(value: str) -> str:
    if value.lstrip().startswith("-----BEGIN"):
        return value
    try:
        return Path(value).read_text("utf-8")
    except OSError as exc:
        raise errors.ConfigError(f"cannot read JWT_PUBLIC_KEY file {value!r}: {exc}") from None


def _algorithms_for_key(pem: str) -> tuple[str, ...]:
    try:
        key = serialization.load_pem_public_key(pem.encode())
    except ValueError as exc:
        raise errors.ConfigError(f"JWT_PUBLIC_KEY is not a PEM public key: {exc}") from None
    if isinstance(key, rsa.RSAPublicKey):
        return ("RS256",)
    if isinstance(key, ec.EllipticCurvePublicKey):
        return ("ES256",)
    if isinstance(key, ed25519.Ed25519PublicKey):
        return ("EdDSA",)
    raise errors.ConfigError("JWT_PUBLIC_KEY must be an RSA, EC or Ed25519 public key")


def from_settings(settings: config.Settings) -> AuthConfig:
    """The auth configuration, generating the embedded database's secret on first use."""
    secret = settings.jwt_secret
    public_key = _public_key_pem(settings.jwt_public_key) if settings.jwt_public_key else None
    if secret is None and public_key is None:
        if not settings.embedded:
            raise errors.ConfigError(
                "DATABASE_URL is set but neither JWT_SECRET nor JWT_PUBLIC_KEY is: refusing to "
                "start an API that could not verify its callers (set JWT_SECRET to 32+ random "
                "bytes, or JWT_PUBLIC_KEY to your identity provider's PEM key)"
            )
        secret = load_or_create_secret(settings.data_dir)
    algorithms = settings.jwt_algorithms
    if not algorithms:
        algorithms = (("HS256",) if secret else ()) + (
            _algorithms_for_key(public_key) if public_key else ()
        )
    return AuthConfig(
        algorithms=algorithms,
        secret=secret,
        public_key=public_key,
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        leeway_seconds=settings.jwt_leeway_seconds,
        tenant_claim=settings.jwt_tenant_claim,
    )
