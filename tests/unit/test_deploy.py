"""The deployment files, checked without a Docker engine.

compose.yaml must follow the Compose Specification (its JSON schema is vendored in
tests/schemas), run only `ledger` commands that exist, and set only variables the
service reads; the Dockerfile and Prometheus config must agree with it.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from ledger import config
from service import cli
from tests.unit.test_config_variables import read_by_handlers

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((ROOT / "tests" / "schemas" / "compose-spec.json").read_text())
LEDGER_SERVICES = ("migrate", "api", "worker")
# Variables compose.yaml interpolates that are the deployment's own, not the service's.
COMPOSE_ONLY = {"POSTGRES_PASSWORD", "LEDGER_DB_PASSWORD", "LEDGER_IMAGE", "WORKER_REPLICAS"}


_VARIABLE = re.compile(r"\$\{([A-Z_][A-Z0-9_]*)(?:(:?[-?])([^${}]*))?\}")


def env_example() -> dict[str, str]:
    text = (ROOT / ".env.example").read_text()
    return dict(re.findall(r"^([A-Z_][A-Z0-9_]*)=(.*)$", text, re.M))


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's ${VAR}, ${VAR:-default} and ${VAR:?error}, innermost first."""

    def one(match: re.Match[str]) -> str:
        name, operator, argument = match.groups()
        value = env.get(name, "")
        if operator in (":-", "-") and (value == "" if operator == ":-" else name not in env):
            return argument
        if operator in (":?", "?") and not value:
            raise AssertionError(f"compose would refuse to start: {name}: {argument}")
        return value

    while _VARIABLE.search(text):
        text = _VARIABLE.sub(one, text)
    return text


def compose(*, env: dict[str, str] | None = None) -> dict[str, Any]:
    """compose.yaml as `docker compose` reads it with the .env copied from .env.example."""
    raw = (ROOT / "compose.yaml").read_text()
    loaded: dict[str, Any] = yaml.safe_load(interpolate(raw, env_example() if env is None else env))
    return loaded


def validate(document: dict[str, Any]) -> None:
    jsonschema.Draft201909Validator.check_schema(SCHEMA)
    jsonschema.Draft201909Validator(SCHEMA).validate(document)


def subcommands() -> set[str]:
    parser = cli.parser()
    for action in parser._actions:
        if action.dest == "command":
            return set(action.choices or ())
    raise AssertionError("the ledger parser has no subcommands")


def parses(argv: list[str]) -> bool:
    try:
        cli.parser().parse_args(argv)
    except SystemExit:
        return False
    return True


def ledger_argvs() -> list[tuple[str, list[str]]]:
    """Every `ledger ...` command line compose.yaml and the Dockerfile run (entrypoint: ledger)."""
    found: list[tuple[str, list[str]]] = []
    for name in LEDGER_SERVICES:
        service = compose()["services"][name]
        found.append((f"{name}.command", list(service["command"])))
        test = service.get("healthcheck", {}).get("test")
        if test and test[0] == "CMD" and test[1] == "ledger":
            found.append((f"{name}.healthcheck", list(test[2:])))
    dockerfile = (ROOT / "Dockerfile").read_text()
    for instruction in ("CMD", "HEALTHCHECK"):
        for match in re.finditer(rf"^{instruction}\b.*?(\[.*?\])\s*$", dockerfile, re.M | re.S):
            argv = json.loads(match.group(1))
            if argv[0] == "ledger":
                argv = argv[1:]
            found.append((f"Dockerfile {instruction}", argv))
    return found


def variables_set(service: dict[str, Any]) -> set[str]:
    environment = service.get("environment", {})
    if isinstance(environment, list):
        return {item.split("=", 1)[0] for item in environment}
    return set(environment)


def test_compose_file_follows_the_compose_specification() -> None:
    validate(compose())


def test_compose_refuses_to_start_without_a_jwt_secret() -> None:
    env = {k: v for k, v in env_example().items() if k != "JWT_SECRET"}
    with pytest.raises(AssertionError, match="JWT_SECRET"):
        compose(env=env)


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("services", "api", "command"), 8080),
        (("services", "api", "restart_policy"), "always"),
        (("services", "worker", "deploy", "replicas"), "many"),
    ],
)
def test_the_schema_rejects_a_broken_compose_file(path: tuple[str, ...], value: Any) -> None:
    document = copy.deepcopy(compose())
    node = document
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    with pytest.raises(jsonschema.ValidationError):
        validate(document)


def test_the_entrypoint_is_the_ledger_cli() -> None:
    assert re.search(r'^ENTRYPOINT \["ledger"\]$', (ROOT / "Dockerfile").read_text(), re.M)


@pytest.mark.parametrize(("where", "argv"), ledger_argvs(), ids=lambda v: str(v))
def test_every_command_the_deployment_runs_is_a_ledger_subcommand(
    where: str, argv: list[str]
) -> None:
    assert argv[0] in subcommands(), f"{where}: `ledger {argv[0]}` is not a subcommand"
    assert parses(argv), f"{where}: `ledger {' '.join(argv)}` does not parse"


def test_a_command_that_does_not_exist_is_caught() -> None:
    assert not parses(["serve-everything"])
    assert not parses(["probe", "--no-such-flag"])


@pytest.mark.parametrize("name", LEDGER_SERVICES)
def test_every_variable_compose_sets_is_one_the_service_reads(name: str) -> None:
    unknown = variables_set(compose()["services"][name]) - config.VARIABLES - read_by_handlers()
    assert not unknown, f"{name} sets variables the service never reads: {sorted(unknown)}"


def test_every_variable_compose_interpolates_is_documented_in_env_example() -> None:
    used = set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*)", (ROOT / "compose.yaml").read_text()))
    documented = set(
        re.findall(r"^#?\s*([A-Z_][A-Z0-9_]*)=", (ROOT / ".env.example").read_text(), re.M)
    )
    assert used <= documented, f"missing from .env.example: {sorted(used - documented)}"
    known = config.VARIABLES | read_by_handlers() | COMPOSE_ONLY
    assert documented <= known, sorted(documented - known)
    assert {"DATABASE_URL", "SERVER_PORT", "WORKER_COUNT", "JWT_SECRET", "LOG_LEVEL"} <= documented


def test_postgres_is_18_with_a_health_check_and_a_volume() -> None:
    services = compose()["services"]
    postgres = services["postgres"]
    assert postgres["image"].split(":")[1].startswith("18")
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])
    assert any(v.startswith("pgdata:") for v in postgres["volumes"])
    for name in LEDGER_SERVICES:
        assert (
            "postgres" in services[name]["depends_on"] or "migrate" in services[name]["depends_on"]
        )
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in ("api", "worker"):
        condition = services[name]["depends_on"]["migrate"]["condition"]
        assert condition == "service_completed_successfully"


def test_workers_run_several_replicas_and_prometheus_is_a_profile() -> None:
    services = compose()["services"]
    assert services["worker"]["deploy"]["replicas"] >= 2
    assert compose(env={"JWT_SECRET": "x"})["services"]["worker"]["deploy"]["replicas"] >= 2
    assert services["prometheus"]["profiles"] == ["monitoring"]


def test_prometheus_scrapes_the_ports_the_services_listen_on() -> None:
    services = compose()["services"]
    scrape = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in scrape["scrape_configs"]}
    api_target = jobs["ledger-api"]["static_configs"][0]["targets"][0]
    assert api_target == f"api:{services['api']['environment']['SERVER_PORT']}"
    worker_sd = jobs["ledger-worker"]["dns_sd_configs"][0]
    assert worker_sd["names"] == ["worker"]
    assert worker_sd["port"] == services["worker"]["environment"]["WORKER_METRICS_PORT"]
    mounted = services["prometheus"]["volumes"][0].split(":")[0]
    assert (ROOT / mounted).resolve() == ROOT / "deploy" / "prometheus" / "prometheus.yml"


def test_the_image_is_multi_stage_non_root_with_a_health_check() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    stages = re.findall(r"^FROM \S+(?: AS (\S+))?", dockerfile, re.M)
    assert len(stages) >= 2
    assert re.search(r"^COPY --from=build ", dockerfile, re.M)
    user = re.findall(r"^USER (\S+)", dockerfile, re.M)
    assert user and user[-1].split(":")[0] not in {"root", "0"}
    assert re.search(r"^HEALTHCHECK ", dockerfile, re.M)
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".git", ".venv", ".ledger"} <= set(ignored)


def test_initdb_script_is_mounted_and_executable() -> None:
    postgres = compose()["services"]["postgres"]
    mount = next(v for v in postgres["volumes"] if "docker-entrypoint-initdb.d" in v)
    folder = ROOT / mount.split(":")[0]
    scripts = sorted(folder.glob("*.sh"))
    assert scripts and all(path.stat().st_mode & 0o111 for path in scripts)
    assert "LEDGER_DB_PASSWORD" in variables_set(postgres)
