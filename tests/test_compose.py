"""docker-compose.yml cannot be run here (no Docker engine); check the promises it makes as text."""

from __future__ import annotations

from pathlib import Path

import yaml

COMPOSE = Path(__file__).resolve().parent.parent / "docker-compose.yml"


def load() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def test_the_whole_stack_is_there():
    services = load()["services"]
    assert {"redis", "postgres", "migrate", "gpu0", "cpu", "flower", "frontend"} <= set(services)
    gpu = services["gpu0"]["deploy"]["resources"]["reservations"]["devices"][0]
    assert gpu["capabilities"] == ["gpu"] and gpu["device_ids"] == ["0"]
    assert services["gpu0"]["command"] == ["tipai", "worker", "gpu", "--gpu", "0"]
    assert "--beat" in services["cpu"]["command"]


def test_workers_wait_for_healthy_services_and_migrations():
    depends = load()["services"]["gpu0"]["depends_on"]
    assert depends["migrate"]["condition"] == "service_completed_successfully"
    assert depends["postgres"]["condition"] == depends["redis"]["condition"] == "service_healthy"


def test_published_ports_are_loopback_only_and_secrets_are_required():
    services = load()["services"]
    for name in ("flower", "frontend"):
        assert all(port.startswith("127.0.0.1:") for port in services[name]["ports"])
    text = COMPOSE.read_text()
    for secret in ("POSTGRES_PASSWORD", "TIPAI_FLOWER_USER", "TIPAI_FLOWER_PASSWORD"):
        assert "${" + secret + ":?" in text  # compose refuses to start without it
    assert "change-me" not in text


def test_env_example_names_every_required_secret_and_env_is_ignored():
    root = COMPOSE.parent
    example = (root / ".env.example").read_text()
    for secret in ("POSTGRES_PASSWORD", "TIPAI_FLOWER_USER", "TIPAI_FLOWER_PASSWORD"):
        assert f"{secret}=" in example
    assert ".env" in (root / ".gitignore").read_text().splitlines()
