"""The Kustomize tree: every rendered object is valid Kubernetes, hardened, and wired to our app."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from typer.testing import CliRunner

from junction.api.routes import health
from junction.cli.main import app as cli_app
from tests.api.harness import running_api
from tests.deploy.render import Obj, key, load_docs, render
from tests.deploy.support import K8S, exported_metric_names, serve_commands

# a dev-extra tool: without it (an old venv) the module skips, naming what to install
kubernetes_validate = pytest.importorskip(
    "kubernetes_validate", reason="install the dev extra (kubernetes-validate)"
)

# the oldest Kubernetes these manifests promise to work on (autoscaling/v2, policy/v1 GA)
K8S_VERSION = "1.30.0"
OVERLAYS = ("dev", "prod")
TREES = ("base", *(f"overlays/{o}" for o in OVERLAYS))


def _rendered(tree: str) -> list[Obj]:
    return render(K8S / tree)


def _by_kind(objs: list[Obj], kind: str) -> list[Obj]:
    return [o for o in objs if o["kind"] == kind]


def _pod_templates(objs: list[Obj]) -> list[tuple[str, dict[str, Any]]]:
    return [(o["metadata"]["name"], o["spec"]["template"]) for o in _by_kind(objs, "Deployment")]


@pytest.mark.parametrize("tree", TREES)
def test_every_object_validates_strictly(tree: str) -> None:
    objs = _rendered(tree)
    assert objs
    for obj in objs:
        # strict: a misspelt or unknown field fails instead of being ignored by the API server
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def test_strict_validation_catches_an_unknown_field() -> None:
    deployment = _by_kind(_rendered("base"), "Deployment")[0]
    deployment["spec"]["template"]["spec"]["containers"][0]["livenessProbes"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSION, strict=True)


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
@pytest.mark.parametrize("tree", TREES)
def test_render_matches_kubectl_kustomize(tree: str) -> None:
    out = subprocess.run(
        ["kubectl", "kustomize", str(K8S / tree)],
        check=True,
        capture_output=True,
        text=True,
        timeout=30,
    ).stdout
    theirs = {key(o): o for o in yaml.safe_load_all(out) if o}
    ours = {key(o): o for o in _rendered(tree)}
    assert ours == theirs


@pytest.mark.parametrize("tree", TREES)
def test_pods_are_hardened(tree: str) -> None:
    for name, template in _pod_templates(_rendered(tree)):
        pod = template["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["runAsUser"] >= 10000, name
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert pod["automountServiceAccountToken"] is False, name
        for c in pod["containers"]:
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True, name
            assert sc["allowPrivilegeEscalation"] is False, name
            assert sc["capabilities"] == {"drop": ["ALL"]}, name
            assert set(c["resources"]) == {"requests", "limits"}, name
            assert {"cpu", "memory"} <= set(c["resources"]["requests"]), name
            assert {"cpu", "memory"} <= set(c["resources"]["limits"]), name
            assert ":" in c["image"], name
            assert not c["image"].endswith(":latest"), name
            # a read-only root needs somewhere to write: /tmp and the state folder are volumes
            mounts = {m["mountPath"] for m in c["volumeMounts"]}
            assert {"/tmp", "/var/lib/junction", "/etc/junction"} <= mounts, name


def test_probes_call_the_apps_health_routes() -> None:
    routes = {r.path for r in health.router.routes}  # type: ignore[attr-defined]
    for _, template in _pod_templates(_rendered("base")):
        c = template["spec"]["containers"][0]
        assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert c["startupProbe"]["httpGet"]["path"] == "/healthz"
        assert {"/healthz", "/readyz"} <= routes
        assert template["metadata"]["annotations"]["prometheus.io/path"] in routes


def test_container_args_name_an_existing_cli_command() -> None:
    commands = serve_commands()
    for name, template in _pod_templates(_rendered("base")):
        args = template["spec"]["containers"][0]["args"]
        assert args[0] in commands, f"{name}: `junction {args[0]}` does not exist"


@pytest.mark.parametrize("tree", TREES)
def test_selectors_and_targets_line_up(tree: str) -> None:
    objs = _rendered(tree)
    deployments = {o["metadata"]["name"]: o for o in _by_kind(objs, "Deployment")}
    pod_labels = [d["spec"]["template"]["metadata"]["labels"] for d in deployments.values()]

    def selects(selector: dict[str, str]) -> bool:
        return any(selector.items() <= labels.items() for labels in pod_labels)

    for svc in _by_kind(objs, "Service"):
        assert selects(svc["spec"]["selector"])
    for pdb in _by_kind(objs, "PodDisruptionBudget"):
        assert selects(pdb["spec"]["selector"]["matchLabels"])
    for d in deployments.values():
        assert d["spec"]["selector"]["matchLabels"].items() <= (
            d["spec"]["template"]["metadata"]["labels"].items()
        )
    for hpa in _by_kind(objs, "HorizontalPodAutoscaler"):
        assert hpa["spec"]["scaleTargetRef"]["name"] in deployments
        target = deployments[hpa["spec"]["scaleTargetRef"]["name"]]
        replicas = target["spec"]["replicas"]
        assert hpa["spec"]["minReplicas"] <= replicas <= hpa["spec"]["maxReplicas"]


def test_hpa_scales_on_cpu_and_consumer_lag_that_the_app_exports() -> None:
    exported = exported_metric_names()
    adapter = yaml.safe_load((K8S.parent / "prometheus" / "adapter-rules.yaml").read_text())
    adapted = {r["name"]["as"] for r in adapter["rules"]["external"]}
    (hpa,) = _by_kind(_rendered("base"), "HorizontalPodAutoscaler")
    kinds = {m["type"] for m in hpa["spec"]["metrics"]}
    assert kinds == {"Resource", "External"}
    external = {m["external"]["metric"]["name"] for m in hpa["spec"]["metrics"] if "external" in m}
    assert "junction_consumer_lag" in external
    assert external <= exported
    assert external <= adapted


def test_prod_brings_its_own_secret_and_dev_has_only_placeholders() -> None:
    assert not _by_kind(_rendered("overlays/prod"), "Secret")
    (secret,) = _by_kind(_rendered("overlays/dev"), "Secret")
    for name, value in secret["stringData"].items():
        if name.endswith(("_KEY", "_SECRET")):
            assert value == "REPLACE_ME", name
        else:
            assert "REPLACE_ME" in value or ".example/" in value, name
    for tree in TREES:
        for _, template in _pod_templates(_rendered(tree)):
            refs = [e["secretRef"]["name"] for e in template["spec"]["containers"][0]["envFrom"]]
            assert refs == [secret["metadata"]["name"]]


def test_overlays_set_namespace_image_and_scale() -> None:
    for overlay, replicas in (("dev", 1), ("prod", 3)):
        objs = _rendered(f"overlays/{overlay}")
        namespace = {"dev": "junction-dev", "prod": "junction"}[overlay]
        assert {o["metadata"]["namespace"] for o in objs} == {namespace}
        (d,) = _by_kind(objs, "Deployment")
        assert d["spec"]["replicas"] == replicas
    (prod,) = _by_kind(_rendered("overlays/prod"), "Deployment")
    container = prod["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "registry.example.com/junction/junction:0.1.0"
    # the patch merged into the container by name: probes and mounts survive
    assert "readinessProbe" in container
    assert container["resources"]["limits"]["cpu"] == "2"


def _config_and_env(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """The ConfigMap's configuration with its paths under ``tmp_path``, and an environment that
    fills its references as the Secret's keys would (SQLite instead of PostgreSQL)."""
    (cm,) = _by_kind(_rendered("base"), "ConfigMap")
    (secret,) = _by_kind(load_docs(K8S / "base" / "secret.yaml"), "Secret")
    config = tmp_path / "junction.yaml"
    text = cm["data"]["junction.yaml"].replace("/var/lib/junction", str(tmp_path))
    config.write_text(text.replace("port: 8080", "port: 0"), encoding="utf-8")
    (tmp_path / "inbox").mkdir()
    env = dict.fromkeys(secret["stringData"], "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    env["JUNCTION_STORE_URL"] = f"sqlite:///{tmp_path / 'junction.db'}"
    env["JUNCTION_SIGNING_KEY"] = "k8s-test-signing-key-0123456789abcdefghijklmnop"
    env["SALES_HOOK_URL"] = secret["stringData"]["SALES_HOOK_URL"]
    env["NURTURE_HOOK_URL"] = secret["stringData"]["NURTURE_HOOK_URL"]
    return config, env


def test_configmap_config_passes_junction_check(tmp_path: Path) -> None:
    config, env = _config_and_env(tmp_path)
    result = CliRunner().invoke(cli_app, ["check", str(config)], env=env)
    assert result.exit_code == 0, result.output
    assert "configuration is valid" in result.output


def test_configmap_config_passes_the_readiness_probe(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config, env = _config_and_env(tmp_path)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with running_api(config) as api:
        ready = httpx.get(f"{api.base_url}/readyz", timeout=10)
        scrape = httpx.get(f"{api.base_url}/metrics", timeout=10)
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"] == {"store": "ok", "model:leads": "ok"}
    assert "junction_outbox_lag_seconds 0.0" in scrape.text
