"""Auth configuration: no default secret, an explicit algorithm allow-list, tokens round-trip."""

from __future__ import annotations

import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jwt
import pytest

from ledger import auth, config, errors
from service import cli

SECRET = "s" * 40


def test_an_external_database_without_a_secret_or_key_refuses_to_start(tmp_path: Path) -> None:
    settings = config.Settings(database_url="postgresql://db/ledger", data_dir=tmp_path)
    with pytest.raises(errors.ConfigError, match="JWT_SECRET nor JWT_PUBLIC_KEY"):
        auth.from_settings(settings)
    assert not (tmp_path / auth.SECRET_FILE).exists()


def test_the_embedded_database_generates_a_private_secret_once_and_keeps_it(
    tmp_path: Path,
) -> None:
    settings = config.Settings(data_dir=tmp_path / "data")
    first = auth.from_settings(settings)
    second = auth.from_settings(settings)

    path = tmp_path / "data" / auth.SECRET_FILE
    assert first.secret is not None and len(first.secret) >= auth.MIN_SECRET_BYTES
    assert second.secret == first.secret
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert first.algorithms == ("HS256",)
    token = first.mint("alice", ["jobs:read"])
    assert second.decode(token).subject == "alice"


def test_a_configured_secret_is_used_and_nothing_is_generated(tmp_path: Path) -> None:
    settings = config.Settings(jwt_secret=SECRET, data_dir=tmp_path)
    assert auth.from_settings(settings).secret == SECRET
    assert not (tmp_path / auth.SECRET_FILE).exists()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"algorithms": ("none",), "secret": SECRET}, "not accepted"),
        ({"algorithms": ("HS256",)}, "needs JWT_SECRET"),
        ({"algorithms": ("RS256",), "secret": SECRET}, "needs JWT_PUBLIC_KEY"),
        ({"algorithms": (), "secret": SECRET}, "no JWT algorithm"),
        ({"algorithms": ("HS256",), "secret": "short"}, "at least 32 bytes"),
    ],
)
def test_unsafe_auth_configurations_are_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(errors.ConfigError, match=message):
        auth.AuthConfig(**kwargs)  # type: ignore[arg-type]


def test_a_public_key_that_is_not_pem_is_refused(tmp_path: Path) -> None:
    settings = config.Settings(
        jwt_public_key="-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----"
    )
    with pytest.raises(errors.ConfigError, match="not a PEM public key"):
        auth.from_settings(settings)
    missing = config.Settings(jwt_public_key=str(tmp_path / "absent.pem"))
    with pytest.raises(errors.ConfigError, match="cannot read"):
        auth.from_settings(missing)


def test_a_token_carries_subject_and_scopes_and_admin_grants_every_scope() -> None:
    config_ = auth.AuthConfig(algorithms=("HS256",), secret=SECRET)
    principal = config_.verify("Bearer " + config_.mint("alice", ["jobs:read", "audit:read"]))
    assert principal.subject == "alice"
    assert principal.scopes == {"jobs:read", "audit:read"}
    with pytest.raises(errors.Forbidden):
        principal.require("jobs:write")
    admin = config_.decode(config_.mint("root", ["admin"]))
    admin.require("jobs:write")
    admin.require("audit:read")


def test_minting_an_unknown_scope_is_refused() -> None:
    config_ = auth.AuthConfig(algorithms=("HS256",), secret=SECRET)
    with pytest.raises(errors.ConfigError, match="unknown scope"):
        config_.mint("alice", ["jobs:everything"])


def test_a_scope_claim_that_is_not_a_string_is_refused() -> None:
    config_ = auth.AuthConfig(algorithms=("HS256",), secret=SECRET)
    exp = datetime.now(UTC) + timedelta(minutes=1)
    token = jwt.encode({"sub": "a", "exp": exp, "scope": ["jobs:read"]}, SECRET, algorithm="HS256")
    with pytest.raises(errors.Unauthorized, match="space-separated"):
        config_.decode(token)


@pytest.mark.parametrize(
    ("text", "seconds"), [("90", 90), ("90s", 90), ("15m", 900), ("1h", 3600), ("7d", 604800)]
)
def test_durations_parse(text: str, seconds: int) -> None:
    assert auth.parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "1w", "-1h", "0", "h"])
def test_bad_durations_are_refused(text: str) -> None:
    with pytest.raises(errors.ConfigError):
        auth.parse_duration(text)


def test_ledger_token_mints_a_token_with_the_asked_subject_scopes_and_lifetime(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("JWT_SECRET", SECRET)
    monkeypatch.setenv("DATABASE_URL", "postgresql://unused/ledger")
    code = cli.main(
        ["token", "--sub", "alice", "--scope", "jobs:write", "--scope", "jobs:read", "--ttl", "1h"]
    )
    assert code == 0
    token = capsys.readouterr().out.strip()
    claims = jwt.decode(token, SECRET, algorithms=["HS256"])
    assert claims["sub"] == "alice"
    assert claims["scope"] == "jobs:write jobs:read"
    assert claims["exp"] - claims["iat"] == 3600


def test_ledger_token_refuses_without_a_secret_on_an_external_database(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("JWT_SECRET", raising=False)
    monkeypatch.delenv("JWT_PUBLIC_KEY", raising=False)
    monkeypatch.setenv("DATABASE_URL", "postgresql://unused/ledger")
    assert cli.main(["token", "--sub", "alice"]) == 2
    assert "JWT_SECRET" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["api", "serve"])
def test_the_api_refuses_to_start_on_an_external_database_without_a_key(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    monkeypatch.delenv("JWT_SECRET", raising=False)
    monkeypatch.delenv("JWT_PUBLIC_KEY", raising=False)
    monkeypatch.setenv("DATABASE_URL", "postgresql://127.0.0.1:1/never-reached")
    assert cli.main([command]) == 2
    assert "refusing to start" in capsys.readouterr().err


class FakeClock:
    """The verifier's clock, moved by the test (PyJWT keeps the real one)."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC).timestamp()

    def __call__(self) -> float:
        return self.now


def _verifier(size: int = 8) -> tuple[auth.AuthConfig, auth.TokenVerifier, FakeClock]:
    config_ = auth.AuthConfig(algorithms=("HS256",), secret=SECRET, leeway_seconds=30)
    clock = FakeClock()
    return config_, auth.TokenVerifier(config_, size=size, clock=clock), clock


def test_a_remembered_token_is_refused_once_its_expiry_and_leeway_have_passed() -> None:
    config_, verifier, clock = _verifier()
    issued = datetime.fromtimestamp(clock.now, UTC)
    token = config_.mint("alice", ["jobs:write"], ttl=timedelta(minutes=5), now=issued)
    assert verifier.verify("Bearer " + token).subject == "alice"
    assert len(verifier) == 1  # remembered
    clock.now += 5 * 60 + 29  # past exp, inside the leeway
    assert verifier.verify("Bearer " + token).subject == "alice"
    clock.now += 1  # exp + leeway
    with pytest.raises(errors.Unauthorized, match="expired"):
        verifier.verify("Bearer " + token)
    assert len(verifier) == 0  # forgotten, and refused again on the next try
    with pytest.raises(errors.Unauthorized, match="expired"):
        verifier.verify("Bearer " + token)


def test_a_token_not_yet_valid_is_refused_and_not_remembered() -> None:
    config_, verifier, _clock = _verifier()
    later = datetime.now(UTC) + timedelta(minutes=10)
    token = config_.mint("alice", ["jobs:write"], now=later)  # nbf and iat in the future
    with pytest.raises(errors.Unauthorized, match="not yet valid"):
        verifier.decode(token)
    assert len(verifier) == 0


def test_a_remembered_token_is_refused_if_the_clock_is_before_its_nbf() -> None:
    config_, verifier, clock = _verifier()
    verifier.decode(config_.mint("alice", ["jobs:write"]))
    clock.now -= 31  # before nbf - leeway (a clock stepped back)
    with pytest.raises(errors.Unauthorized, match="not yet valid"):
        verifier.decode(config_.mint("alice", ["jobs:write"]))


def test_only_tokens_that_pass_are_remembered_and_a_changed_byte_is_a_different_token() -> None:
    config_, verifier, _clock = _verifier()
    token = config_.mint("alice", ["jobs:write"])
    verifier.decode(token)
    forged = token[:-2] + ("AA" if token[-2:] != "AA" else "BB")  # another signature
    with pytest.raises(errors.Unauthorized, match="invalid token"):
        verifier.decode(forged)
    other = auth.AuthConfig(algorithms=("HS256",), secret="x" * 40).mint("mallory", ["admin"])
    with pytest.raises(errors.Unauthorized, match="invalid token"):
        verifier.decode(other)  # signed with another secret
    assert len(verifier) == 1


def test_the_token_cache_is_bounded_and_forgets_the_oldest_first() -> None:
    config_, verifier, _clock = _verifier(size=2)
    tokens = [config_.mint(f"user{i}", ["jobs:read"]) for i in range(3)]
    for token in tokens:
        verifier.decode(token)
    assert len(verifier) == 2
    assert tokens[0] not in verifier
    assert [verifier.decode(t).subject for t in tokens] == ["user0", "user1", "user2"]


def test_a_verifier_without_a_cache_checks_every_token_fully() -> None:
    config_, verifier, _clock = _verifier(size=0)
    assert verifier.decode(config_.mint("alice", ["jobs:read"])).subject == "alice"
    assert len(verifier) == 0


def test_admin_grants_every_scope_but_tenants_admin() -> None:
    config_ = auth.AuthConfig(algorithms=("HS256",), secret=SECRET)
    admin = config_.decode(config_.mint("root", ["admin"]))
    for scope in auth.SCOPES - {"tenants:admin"}:
        admin.require(scope)
    assert not admin.allows("tenants:admin")
    with pytest.raises(errors.Forbidden, match="tenants:admin"):
        admin.require("tenants:admin")
    operator = config_.decode(config_.mint("ops", ["tenants:admin"]))
    operator.require("tenants:admin")
    assert not operator.allows("jobs:read")  # tenants:admin grants nothing else


def test_a_token_names_its_tenant_in_the_configured_claim() -> None:
    config_ = auth.AuthConfig(algorithms=("HS256",), secret=SECRET)
    assert config_.decode(config_.mint("alice", ["jobs:read"], tenant="acme")).tenant == "acme"
    assert config_.decode(config_.mint("alice", ["jobs:read"])).tenant is None
    org = auth.AuthConfig(algorithms=("HS256",), secret=SECRET, tenant_claim="org_id")
    minted = org.mint("alice", ["jobs:read"], tenant="acme")
    assert jwt.decode(minted, SECRET, algorithms=["HS256"])["org_id"] == "acme"
    assert "tenant" not in jwt.decode(minted, SECRET, algorithms=["HS256"])
    assert org.decode(minted).tenant == "acme"
    # The default configuration reads `tenant`: this token names no tenant there.
    assert config_.decode(minted).tenant is None


@pytest.mark.parametrize("value", ["", "acme corp", "-acme", "x" * 129, 42, ["acme"], None])
def test_a_tenant_claim_that_is_not_a_tenant_id_is_refused(value: object) -> None:
    config_ = auth.AuthConfig(algorithms=("HS256",), secret=SECRET)
    exp = datetime.now(UTC) + timedelta(minutes=1)
    token = jwt.encode({"sub": "a", "exp": exp, "tenant": value}, SECRET, algorithm="HS256")
    with pytest.raises(errors.Unauthorized, match="'tenant' claim must be a tenant id"):
        config_.decode(token)


def test_minting_a_tenant_that_is_not_a_tenant_id_is_refused() -> None:
    config_ = auth.AuthConfig(algorithms=("HS256",), secret=SECRET)
    with pytest.raises(errors.InvalidTenant):
        config_.mint("alice", ["jobs:read"], tenant="acme corp")


def test_ledger_token_tenant_mints_the_tenant_claim(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("JWT_SECRET", SECRET)
    monkeypatch.setenv("DATABASE_URL", "postgresql://unused/ledger")
    monkeypatch.delenv("JWT_TENANT_CLAIM", raising=False)
    assert cli.main(["token", "--sub", "alice", "--tenant", "acme"]) == 0
    claims = jwt.decode(capsys.readouterr().out.strip(), SECRET, algorithms=["HS256"])
    assert claims["tenant"] == "acme"

    monkeypatch.setenv("JWT_TENANT_CLAIM", "org_id")
    assert cli.main(["token", "--sub", "alice", "--tenant", "acme"]) == 0
    claims = jwt.decode(capsys.readouterr().out.strip(), SECRET, algorithms=["HS256"])
    assert claims["org_id"] == "acme" and "tenant" not in claims


def test_ledger_token_without_tenant_mints_no_tenant_claim(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("JWT_SECRET", SECRET)
    monkeypatch.setenv("DATABASE_URL", "postgresql://unused/ledger")
    monkeypatch.delenv("JWT_TENANT_CLAIM", raising=False)
    assert cli.main(["token", "--sub", "alice"]) == 0
    claims = jwt.decode(capsys.readouterr().out.strip(), SECRET, algorithms=["HS256"])
    assert "tenant" not in claims


def test_ledger_token_refuses_a_tenant_that_is_not_a_tenant_id(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("JWT_SECRET", SECRET)
    monkeypatch.setenv("DATABASE_URL", "postgresql://unused/ledger")
    with pytest.raises(SystemExit) as exited:
        cli.main(["token", "--sub", "alice", "--tenant", "acme corp"])
    assert exited.value.code == 2
    err = capsys.readouterr()
    assert "is not a tenant id" in err.err and err.out == ""
