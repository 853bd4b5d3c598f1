"""The compose stack: structure, health checks, files it mounts, and no secrets inline.

Docker's engine does not run on the development machines, so this checks what ``docker compose
config`` would (paths, references) plus our own rules, and runs ``junction check`` on the config.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from junction.api.routes import health
from junction.cli.main import app as cli_app
from tests.deploy.support import DEPLOY, serve_commands

COMPOSE_DIR = DEPLOY / "compose"
COMPOSE = COMPOSE_DIR / "docker-compose.yaml"
SECRETISH = re.compile(r"PASSWORD|SECRET|TOKEN|_KEY$|PRIVATE", re.IGNORECASE)
ROLES = ("ingest", "normalize", "score", "deliver")
REQUIRED_SERVICES = {
    "junction",
    *(f"junction-{role}" for role in ROLES),
    "postgres",
    "kafka",
    "kafka-exporter",
    "prometheus",
    "grafana",
}


def _compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    return data


def _services() -> dict[str, dict[str, Any]]:
    services: dict[str, dict[str, Any]] = _compose()["services"]
    return services


def _env_file(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            k, _, v = line.partition("=")
            out[k.strip()] = v.strip()
    return out


def _host_path(spec: str) -> Path | None:
    source = spec.split(":")[0]
    return (COMPOSE_DIR / source).resolve() if source.startswith(".") else None


def test_the_stack_has_every_part() -> None:
    assert set(_services()) >= REQUIRED_SERVICES
    declared = set(_compose()["volumes"])
    for name, svc in _services().items():
        for spec in svc.get("volumes", []):
            if _host_path(spec) is None:
                assert spec.split(":")[0] in declared, (name, spec)
        for dep in svc.get("depends_on", {}):
            assert dep in _services(), (name, dep)


@pytest.mark.parametrize("name", sorted(_services()))
def test_images_are_pinned_and_services_are_health_checked(name: str) -> None:
    svc = _services()[name]
    image = svc["image"]
    assert ":" in image, name
    assert not image.endswith(":latest"), name
    if svc.get("restart") != "no":
        test = svc["healthcheck"]["test"]
        assert test[0] in {"CMD", "CMD-SHELL"}, name
    for dep, cond in svc.get("depends_on", {}).items():
        assert cond["condition"] == "service_healthy", (name, dep)


@pytest.mark.parametrize("name", sorted(_services()))
def test_files_it_references_exist_and_no_secret_is_inline(name: str) -> None:
    svc = _services()[name]
    for spec in svc.get("volumes", []):
        host = _host_path(spec)
        if host is not None:
            assert host.exists(), (name, spec)
    for entry in svc.get("env_file", []):
        if entry["required"]:
            assert (COMPOSE_DIR / entry["path"]).is_file(), (name, entry)
        else:
            # optional overrides hold real secrets: they must never be committed
            assert entry["path"].endswith(".local.env"), (name, entry)
    for key in svc.get("environment", {}):
        assert not SECRETISH.search(key), f"{name}: {key} belongs in an env file"


def test_env_files_hold_only_dev_values() -> None:
    ignore = (COMPOSE_DIR / ".gitignore").read_text(encoding="utf-8")
    assert "env/*.local.env" in ignore
    for path in sorted((COMPOSE_DIR / "env").glob("*.env")):
        assert path.read_text(encoding="utf-8").startswith("# DEV ONLY"), path.name
        for key, value in _env_file(path).items():
            if SECRETISH.search(key) and not value.startswith("whsec_"):
                assert value.startswith("dev-only-"), (path.name, key)


def test_junction_services_run_hardened_existing_commands() -> None:
    routes = {r.path for r in health.router.routes}  # type: ignore[attr-defined]
    roles = {n: s for n, s in _services().items() if s["image"].startswith("junction:")}
    assert "junction" in roles
    for name, svc in roles.items():
        assert (COMPOSE_DIR / svc["build"]["context"] / svc["build"]["dockerfile"]).is_file()
        assert svc["command"][0] in serve_commands(), name
        assert svc["read_only"] is True, name
        assert svc["user"] == "10001:10001", name
        assert svc["cap_drop"] == ["ALL"], name
        assert "/tmp" in svc["tmpfs"], name
    probe = " ".join(roles["junction"]["healthcheck"]["test"])
    assert any(f"8080{route}'" in probe for route in routes), probe


def _metrics_port(command: list[str]) -> int:
    return int(command[command.index("--metrics-port") + 1])


def test_every_stage_role_runs_as_a_worker_health_checked_on_its_metrics_port() -> None:
    services = _services()
    for role in ROLES:
        svc = services[f"junction-{role}"]
        command = svc["command"]
        assert command[:4] == ["worker", "/etc/junction/junction.yaml", "--role", role]
        # reachable from the health check and from Prometheus in another container
        assert command[command.index("--metrics-host") + 1] == "0.0.0.0"
        probe = " ".join(svc["healthcheck"]["test"])
        assert f"127.0.0.1:{_metrics_port(command)}/metrics'" in probe, role
        assert svc["depends_on"]["kafka"] == {"condition": "service_healthy"}
    config = yaml.safe_load((COMPOSE_DIR / "junction.yaml").read_text(encoding="utf-8"))
    kafka_port = services["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"].rsplit(":", 1)[1]
    assert config["bus"]["bootstrap_servers"] == f"kafka:{kafka_port}"
    assert f"--kafka.server=kafka:{kafka_port}" in services["kafka-exporter"]["command"]


def test_prometheus_and_grafana_mounts_match_their_configs() -> None:
    svcs = _services()
    prom_mounts = {s.split(":")[1]: _host_path(s) for s in svcs["prometheus"]["volumes"]}
    prom_cfg = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yaml").read_text())
    for rule_file in prom_cfg["rule_files"]:
        assert prom_mounts[rule_file] == DEPLOY / "prometheus" / "alerts.yaml"
    jobs = {job["job_name"]: job for job in prom_cfg["scrape_configs"]}
    targets = [t for sc in jobs["junction"]["static_configs"] for t in sc["targets"]]
    assert targets[0] == "junction:8080"
    assert "8080:8080" in svcs["junction"]["ports"]
    # every worker's metrics port is scraped under the same job (the JunctionDown alert)
    workers = {n: s for n, s in svcs.items() if s.get("command", [""])[0] == "worker"}
    assert workers
    assert set(targets[1:]) == {f"{n}:{_metrics_port(s['command'])}" for n, s in workers.items()}
    (exporter,) = jobs["kafka-exporter"]["static_configs"][0]["targets"]
    assert exporter.split(":")[0] == "kafka-exporter"
    assert exporter.split(":")[1] in " ".join(svcs["kafka-exporter"]["healthcheck"]["test"])

    graf_mounts = {s.split(":")[1]: _host_path(s) for s in svcs["grafana"]["volumes"]}
    provider = yaml.safe_load(
        (DEPLOY / "grafana" / "provisioning" / "dashboards" / "junction.yaml").read_text()
    )["providers"][0]
    dashboard_dir = provider["options"]["path"]
    assert graf_mounts[f"{dashboard_dir}/junction-dashboard.json"] == (
        DEPLOY / "grafana" / "junction-dashboard.json"
    )
    assert graf_mounts["/etc/grafana/provisioning/datasources"] == (
        DEPLOY / "grafana" / "provisioning" / "datasources"
    )


def test_compose_config_passes_junction_check(tmp_path: Path) -> None:
    env = _env_file(COMPOSE_DIR / "env" / "junction.env")
    # the same config, against a throwaway SQLite store instead of the stack's PostgreSQL
    env["JUNCTION_STORE_URL"] = f"sqlite:///{tmp_path / 'junction.db'}"
    result = CliRunner().invoke(cli_app, ["check", str(COMPOSE_DIR / "junction.yaml")], env=env)
    assert result.exit_code == 0, result.output
    assert "configuration is valid" in result.output
