"""docker-compose.yml is not run here, but it must parse and name real entry points."""

from __future__ import annotations

import importlib
import json
import re
import shlex
from pathlib import Path
from urllib.parse import urlsplit

import yaml

ROOT = Path(__file__).resolve().parents[2]


def load_compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_every_service_is_there_with_a_health_check():
    services = load_compose()["services"]
    default = {name for name, service in services.items() if not service.get("profiles")}
    assert default == {"web", "worker", "beat", "sealer", "postgres", "redis", "minio"}
    # Optional services start only with their profile (docker compose --profile siem up).
    assert {name: services[name]["profiles"] for name in set(services) - default} == {
        "forwarder": ["siem"]
    }
    assert "manage.py run_audit_forwarder" in services["forwarder"]["command"]
    for name, service in services.items():
        assert "healthcheck" in service, f"{name} has no health check"
        assert service["healthcheck"]["test"], name


def test_portal_services_name_real_entry_points():
    services = load_compose()["services"]
    web = services["web"]["command"]
    match = re.search(r"gunicorn (\S+):(\S+)", web)
    assert match, web
    module = importlib.import_module(match.group(1))
    assert callable(getattr(module, match.group(2)))
    assert "manage.py migrate" in web
    for name, verb in (("worker", "worker"), ("beat", "beat")):
        command = services[name]["command"]
        match = re.search(r"celery -A (\S+) (\w+)", command)
        assert match, command
        assert match.group(2) == verb
        app = importlib.import_module(match.group(1)).celery_app
        assert app.main == "portal"
    assert "manage.py run_audit_sealer" in services["sealer"]["command"]
    assert (ROOT / "Dockerfile").exists()


def test_portal_services_run_in_production_mode_with_the_stack():
    services = load_compose()["services"]
    for name in ("web", "worker", "beat", "sealer"):
        env = services[name]["environment"]
        assert env["DJANGO_DEBUG"] == "0"
        assert env["DATABASE_URL"].startswith("postgres://")
        assert env["REDIS_URL"].startswith("redis://redis:")
        assert env["AWS_S3_ENDPOINT_URL"] == "http://minio:9000"
        assert set(services[name]["depends_on"]) == {"postgres", "redis", "minio"}


def test_gunicorn_runs_with_the_portals_logging_config():
    """Without ``portal.gunicorn`` gunicorn's own access and error logs skip the redaction
    (``test_request_line_logs`` runs the compose command for real)."""
    web = load_compose()["services"]["web"]["command"]
    dockerfile = (ROOT / "Dockerfile").read_text()
    image = json.loads(re.search(r"^CMD (\[.*\])$", dockerfile, re.MULTILINE).group(1))
    for command in (web.split(), image):
        args = command[command.index("gunicorn") + 1 :]
        assert args[0] == "portal.wsgi:application", command
        assert "-c" in args, command
        assert args[args.index("-c") + 1] == "python:portal.gunicorn", command


def test_the_portal_runs_as_a_plain_role_and_migrates_as_the_owner():
    """web, worker and beat use the runtime role, never the superuser; only web's migrate step
    gets the owner's URL (audit/tests/test_database_roles.py runs the init script for real)."""
    services = load_compose()["services"]
    postgres = services["postgres"]["environment"]
    superuser, owner, runtime = (
        postgres["POSTGRES_USER"],
        postgres["PORTAL_DB_OWNER"],
        postgres["PORTAL_DB_USER"],
    )
    assert len({superuser, owner, runtime}) == 3
    for name in ("web", "worker", "beat"):
        assert urlsplit(services[name]["environment"]["DATABASE_URL"]).username == runtime, name
    assert urlsplit(services["web"]["environment"]["DATABASE_OWNER_URL"]).username == owner
    for name in ("worker", "beat"):
        assert "DATABASE_OWNER_URL" not in services[name]["environment"], name
    steps = [step.strip() for step in shlex.split(services["web"]["command"])[-1].split("&&")]
    migrate = next(i for i, step in enumerate(steps) if "manage.py migrate" in step)
    gunicorn = next(i for i, step in enumerate(steps) if step.startswith("gunicorn "))
    assert "unset DATABASE_OWNER_URL" in steps[migrate + 1 : gunicorn]
    init = "docker/postgres-init.sh"
    assert (ROOT / init).exists()
    mounts = [volume.split(":") for volume in services["postgres"]["volumes"]]
    assert any(
        source == f"./{init}" and target.startswith("/docker-entrypoint-initdb.d/")
        for source, target, *_ in mounts
    )
