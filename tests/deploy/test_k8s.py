"""The Kustomize tree: every rendered object is valid Kubernetes, hardened, and wired to our app."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from confluent_kafka import Producer
from typer.testing import CliRunner

from junction.api.routes import health
from junction.cli.main import app as cli_app
from tests.api.harness import running_api
from tests.deploy.render import Obj, key, load_docs, render
from tests.deploy.support import K8S, exported_metric_names, serve_commands
from tests.fakes.kafka_broker import shared_broker

# a dev-extra tool: without it (an old venv) the module skips, naming what to install
kubernetes_validate = pytest.importorskip(
    "kubernetes_validate", reason="install the dev extra (kubernetes-validate)"
)

# the stage roles, in flow order (junction/pipeline/stages/topics.py ROLES)
ROLES = ("ingest", "normalize", "score", "deliver")
# series the HPAs may read that Junction does not export: kafka-exporter's consumer-group lag
KAFKA_EXPORTER_SERIES = {"kafka_consumergroup_lag"}
# the oldest Kubernetes these manifests promise to work on (autoscaling/v2, policy/v1 GA)
K8S_VERSION = "1.30.0"
OVERLAYS = ("dev", "prod")
TREES = ("base", *(f"overlays/{o}" for o in OVERLAYS))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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


def _serving(objs: list[Obj]) -> list[tuple[str, dict[str, Any]]]:
    """The pod templates of Deployments that serve the API (a port named http)."""
    return [
        (n, t)
        for n, t in _pod_templates(objs)
        if any(p["name"] == "http" for p in t["spec"]["containers"][0].get("ports", []))
    ]


def _workers(objs: list[Obj]) -> dict[str, Obj]:
    """The stage workers' Deployments by role (``junction worker ... --role <role>``)."""
    out = {}
    for d in _by_kind(objs, "Deployment"):
        args = d["spec"]["template"]["spec"]["containers"][0]["args"]
        if args[0] == "worker":
            out[args[args.index("--role") + 1]] = d
    return out


def _bus(objs: list[Obj]) -> dict[str, Any]:
    (cm,) = _by_kind(objs, "ConfigMap")
    bus: dict[str, Any] = yaml.safe_load(cm["data"]["junction.yaml"])["bus"]
    return bus


def test_probes_call_the_apps_health_routes() -> None:
    routes = {r.path for r in health.router.routes}  # type: ignore[attr-defined]
    serving = _serving(_rendered("base"))
    assert [name for name, _ in serving] == ["junction-serve"]
    for _, template in serving:
        c = template["spec"]["containers"][0]
        assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert c["startupProbe"]["httpGet"]["path"] == "/healthz"
        assert {"/healthz", "/readyz"} <= routes
        assert template["metadata"]["annotations"]["prometheus.io/path"] in routes


def test_every_stage_role_has_a_worker_deployment_pdb_and_hpa() -> None:
    for tree in TREES:
        objs = _rendered(tree)
        workers = _workers(objs)
        assert sorted(workers, key=ROLES.index) == list(ROLES), tree
        pdbs = {o["metadata"]["name"]: o for o in _by_kind(objs, "PodDisruptionBudget")}
        hpas = {
            o["spec"]["scaleTargetRef"]["name"]: o
            for o in _by_kind(objs, "HorizontalPodAutoscaler")
        }
        for role, d in workers.items():
            name = d["metadata"]["name"]
            assert name == f"junction-{role}"
            labels = d["spec"]["template"]["metadata"]["labels"]
            assert labels["app.kubernetes.io/component"] == role
            # this role's PDB selects this role's pods, and no other Deployment's
            pdb = pdbs[name]["spec"]
            selected = [
                o["metadata"]["name"]
                for o in _by_kind(objs, "Deployment")
                if pdb["selector"]["matchLabels"].items()
                <= o["spec"]["template"]["metadata"]["labels"].items()
            ]
            assert selected == [name], tree
            assert pdb.get("maxUnavailable") == 1, name
            assert name in hpas, name
            c = d["spec"]["template"]["spec"]["containers"][0]
            assert c["args"][:2] == ["worker", "/etc/junction/junction.yaml"]


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


def _external(hpa: Obj) -> dict[str, dict[str, Any]]:
    return {
        m["external"]["metric"]["name"]: m["external"]
        for m in hpa["spec"]["metrics"]
        if "external" in m
    }


def test_hpa_scales_on_cpu_and_consumer_lag_that_the_app_exports() -> None:
    exported = exported_metric_names()
    adapter = yaml.safe_load((K8S.parent / "prometheus" / "adapter-rules.yaml").read_text())
    adapted = {r["name"]["as"] for r in adapter["rules"]["external"]}
    hpas = {
        h["metadata"]["name"]: h for h in _by_kind(_rendered("base"), "HorizontalPodAutoscaler")
    }
    hpa = hpas["junction-serve"]
    kinds = {m["type"] for m in hpa["spec"]["metrics"]}
    assert kinds == {"Resource", "External"}
    external = set(_external(hpa))
    assert "junction_consumer_lag" in external
    assert external <= exported
    assert external <= adapted


def test_worker_hpas_scale_on_cpu_and_their_groups_lag() -> None:
    objs = _rendered("base")
    bus = _bus(objs)
    group_prefix = bus.get("group_prefix", "junction")
    partitions = bus.get("partitions", 6)
    exported = exported_metric_names()
    adapter = yaml.safe_load((K8S.parent / "prometheus" / "adapter-rules.yaml").read_text())
    rules = {r["name"]["as"]: r for r in adapter["rules"]["external"]}
    hpas = {h["metadata"]["name"]: h for h in _by_kind(objs, "HorizontalPodAutoscaler")}
    for role, d in _workers(objs).items():
        hpa = hpas[d["metadata"]["name"]]
        cpu = [m["resource"] for m in hpa["spec"]["metrics"] if m["type"] == "Resource"]
        assert cpu == [{"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}}]
        external = _external(hpa)
        assert set(external) <= set(rules), role
        for name in external:
            # Junction's own series, or the one kafka-exporter series the adapter maps
            assert name in exported or name in KAFKA_EXPORTER_SERIES, (role, name)
        if role == "ingest":
            # it reads sources, not a stage topic: a Kafka source's lag is Junction's gauge
            assert "junction_consumer_lag" in external
            continue
        lag = external["kafka_consumergroup_lag"]
        # the group the worker joins: <group_prefix>.<first role> (BusConfig)
        assert lag["metric"]["selector"] == {
            "matchLabels": {"consumergroup": f"{group_prefix}.{role}"}
        }
        assert lag["target"]["type"] == "AverageValue"
        assert "consumergroup" in rules["kafka_consumergroup_lag"]["metricsQuery"]
        # a group has at most one busy member per partition: more replicas would idle
        assert hpa["spec"]["maxReplicas"] <= partitions, role
    assert "junction_outbox_lag_seconds" in _external(hpas["junction-deliver"])
    # the source-lag figure (serve, ingest) leaves out the stage groups' own lag series
    assert 'pipeline!~"stage[.].*"' in rules["junction_consumer_lag"]["metricsQuery"]


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
        deployments = {d["metadata"]["name"]: d for d in _by_kind(objs, "Deployment")}
        assert deployments["junction-serve"]["spec"]["replicas"] == replicas
        for name, d in deployments.items():
            image = d["spec"]["template"]["spec"]["containers"][0]["image"]
            assert (
                image
                == {
                    "dev": "junction:dev",
                    "prod": "registry.example.com/junction/junction:0.1.0",
                }[overlay]
            ), name
        if overlay == "dev":
            # one replica of everything, the HPAs allow two
            assert {d["spec"]["replicas"] for d in deployments.values()} == {1}
            for hpa in _by_kind(objs, "HorizontalPodAutoscaler"):
                assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (1, 2)
    prod = {d["metadata"]["name"]: d for d in _by_kind(_rendered("overlays/prod"), "Deployment")}
    container = prod["junction-serve"]["spec"]["template"]["spec"]["containers"][0]
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
    env["JUNCTION_KAFKA_BOOTSTRAP"] = "127.0.0.1:9"  # discard port: nothing answers
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


def _readiness_script(objs: list[Obj]) -> str:
    scripts = set()
    for d in _workers(objs).values():
        command = d["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["exec"][
            "command"
        ]
        assert command[:2] == ["python", "-c"]
        scripts.add(command[2])
    (script,) = scripts  # one probe for every role
    return str(script)


@pytest.mark.slow
def test_worker_pod_runs_its_command_and_its_probes_tell_the_truth(tmp_path: Path) -> None:
    """The ConfigMap's config under ``junction worker`` (the normalize pod's args, a free metrics
    port) against a real broker: a raw lead comes out canonical, the startup/liveness URL serves
    Junction's metrics with the role's consumer lag, the readiness command passes while Kafka
    answers and fails on a closed port, and SIGTERM ends the worker cleanly."""
    objs = _rendered("base")
    worker = _workers(objs)["normalize"]
    container = worker["spec"]["template"]["spec"]["containers"][0]
    broker = shared_broker()
    config, env = _config_and_env(tmp_path)
    env["JUNCTION_KAFKA_BOOTSTRAP"] = broker.bootstrap
    port = _free_port()
    args = [a.replace("/etc/junction/junction.yaml", str(config)) for a in container["args"]]
    args[args.index("--metrics-port") + 1] = str(port)
    args[args.index("--metrics-host") + 1] = "127.0.0.1"
    liveness = container["livenessProbe"]["httpGet"]
    assert container["startupProbe"]["httpGet"] == liveness
    assert liveness["port"] == container["ports"][0]["name"] == "metrics"
    annotations = worker["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(container["ports"][0]["containerPort"])
    full_env = {**os.environ, **env}
    # one raw lead for the ConfigMap's pipeline, as the ingest role writes it
    bus = _bus(objs)
    prefix = bus.get("topic_prefix", "junction")
    raw_topic, canonical_topic = f"{prefix}.raw.lead.v1", f"{prefix}.canonical.lead.v1"
    (pipeline,) = yaml.safe_load(config.read_text(encoding="utf-8"))["pipelines"]
    record_id = f"{pipeline}:k8s-test-{time.monotonic_ns()}"
    value = {
        "pipeline": pipeline,
        "record_id": record_id,
        "key": record_id.split(":", 1)[1],
        "stream": "leads.csv",
        "position": 1,
        "version": None,
        "provenance": {"connector": "csv_file"},
        "record": {"lead_id": "K8S-1", "email": "ada@example.com", "company": "Acme GmbH"},
    }
    broker.create_topic(raw_topic, bus.get("partitions", 6))
    producer = Producer({"bootstrap.servers": broker.bootstrap})
    producer.produce(
        raw_topic,
        value=json.dumps(value).encode(),
        key=record_id.encode(),
        headers=[("junction-pipeline", pipeline.encode()), ("junction-record-id", record_id)],
    )
    assert producer.flush(15) == 0
    proc = subprocess.Popen(
        [sys.executable, "-m", "junction.cli.main", *args],
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        url = f"http://127.0.0.1:{port}{liveness['path']}"
        # the raw topic's lag, labelled with the role, appears once the worker has consumed
        wanted = {'pipeline="stage.normalize"', f'topic="{raw_topic}"'}

        def joined(text: str) -> bool:
            return any(
                line.startswith("junction_consumer_lag{") and all(w in line for w in wanted)
                for line in text.splitlines()
            )

        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.communicate()[0].decode(errors="replace")
            try:
                scrape = httpx.get(url, timeout=2)
                assert scrape.status_code == 200
                # Junction's registry, not only the client library's process metrics
                assert "# TYPE junction_records_in_total counter" in scrape.text
                if joined(scrape.text):
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the worker never reported its partitions' lag"
            time.sleep(0.5)
        assert annotations["prometheus.io/path"] == liveness["path"]
        # the lead went through the role: canonical now, on the next stage's topic
        ids = {m.key() for m in broker.read_all(canonical_topic)}
        assert record_id.encode() in ids
        script = _readiness_script(objs)
        ready = subprocess.run([sys.executable, "-c", script], env=full_env, timeout=30)
        assert ready.returncode == 0
        closed = {**full_env, "JUNCTION_KAFKA_BOOTSTRAP": f"127.0.0.1:{_free_port()}"}
        not_ready = subprocess.run(
            [sys.executable, "-c", script], env=closed, timeout=30, capture_output=True
        )
        assert not_ready.returncode != 0
        assert b"ConnectionRefusedError" in not_ready.stderr
    finally:
        proc.send_signal(signal.SIGTERM)
        out = proc.communicate(
            timeout=worker["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        )[0]
    assert proc.returncode == 0, out.decode(errors="replace")
