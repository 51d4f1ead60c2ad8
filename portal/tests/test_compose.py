"""docker-compose.yml is not run here, but it must parse and name real entry points."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def load_compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_every_service_is_there_with_a_health_check():
    services = load_compose()["services"]
    assert set(services) == {"web", "worker", "beat", "postgres", "redis", "minio"}
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
    assert (ROOT / "Dockerfile").exists()


def test_portal_services_run_in_production_mode_with_the_stack():
    services = load_compose()["services"]
    for name in ("web", "worker", "beat"):
        env = services[name]["environment"]
        assert env["DJANGO_DEBUG"] == "0"
        assert env["DATABASE_URL"].startswith("postgres://")
        assert env["REDIS_URL"].startswith("redis://redis:")
        assert env["AWS_S3_ENDPOINT_URL"] == "http://minio:9000"
        assert set(services[name]["depends_on"]) == {"postgres", "redis", "minio"}
