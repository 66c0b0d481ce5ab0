"""The deployment artifacts under ``deploy/`` parse and agree with the code.

Metric names in the Grafana dashboard and the Prometheus alert rules are checked against the
metrics the code declares (with the series names prometheus_client exposes for each type), and
the settings, embedded TOML files, ports and paths in the manifests against the settings classes
and each other. Neither ``docker compose config`` nor ``promtool check rules`` is available on the
development machines, so the compose file and the PromQL are not checked by those tools here.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from api.hosts import host_allowed
from api.settings import ApiSettings
from streamer.core.policy import load_policy
from streamer.delivery.config import load_delivery_config
from streamer.delivery.settings import DeliverySettings
from streamer.worker.settings import WorkerSettings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
COMPOSE = DEPLOY / "docker-compose.yml"
PROMETHEUS = DEPLOY / "prometheus" / "prometheus.yml"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "churnwatch.json"

YAML_FILES = sorted(
    [COMPOSE, PROMETHEUS, ALERTS, *K8S.glob("*.yaml"), *(DEPLOY / "grafana" / "provisioning").rglob("*.yml")]
)

_DECLARATION = re.compile(r"\b(Counter|Gauge|Histogram|Summary)\(\s*\"([a-zA-Z_:][a-zA-Z0-9_:]*)\"")
_METRIC_REF = re.compile(r"\bchurnwatch_[a-z0-9_]+\b")


def _declared_series() -> dict[str, str]:
    """Every series name the code exposes, mapped to the metric type that exposes it."""
    series: dict[str, str] = {}
    for package in ("streamer", "api"):
        for path in (ROOT / package).rglob("*.py"):
            for kind, name in _DECLARATION.findall(path.read_text(encoding="utf-8")):
                if kind == "Counter":
                    series[name.removesuffix("_total") + "_total"] = kind
                elif kind in ("Histogram", "Summary"):
                    for suffix in ("_bucket", "_sum", "_count"):
                        if kind == "Summary" and suffix == "_bucket":
                            continue
                        series[name + suffix] = kind
                else:
                    series[name] = kind
    return series


SERIES = _declared_series()


def _docs(path: Path) -> list[Any]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc is not None]


def _k8s_docs() -> list[dict[str, Any]]:
    return [doc for path in sorted(K8S.glob("*.yaml")) for doc in _docs(path)]


def _k8s(kind: str, name: str) -> dict[str, Any]:
    matches = [d for d in _k8s_docs() if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind}/{name}, found {len(matches)}"
    return matches[0]


def _workloads() -> Iterator[dict[str, Any]]:
    yield from (d for d in _k8s_docs() if d["kind"] in ("Deployment", "StatefulSet"))


def _unknown_metrics(expr: str) -> set[str]:
    return {name for name in _METRIC_REF.findall(expr) if name not in SERIES}


def _alert_rules() -> list[dict[str, Any]]:
    (doc,) = _docs(ALERTS)
    return [rule for group in doc["groups"] for rule in group["rules"]]


def _dashboard_panels() -> list[dict[str, Any]]:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    panels: list[dict[str, Any]] = []
    for panel in dashboard["panels"]:
        panels.append(panel)
        panels.extend(panel.get("panels", []))
    return [p for p in panels if p["type"] != "row"]


def test_the_code_declares_the_documented_metrics() -> None:
    # Guards the checks below: if the declaration pattern stopped matching, nothing would be checked.
    assert {
        "churnwatch_events_total",
        "churnwatch_consumer_lag",
        "churnwatch_event_time_lag_seconds_bucket",
        "churnwatch_api_requests_total",
        "churnwatch_api_request_seconds_bucket",
        "churnwatch_deliveries_total",
        "churnwatch_delivery_dlq_total",
        "churnwatch_delivery_destinations_disabled",
    } <= SERIES.keys()


@pytest.mark.parametrize("path", YAML_FILES, ids=lambda p: str(p.relative_to(DEPLOY)))
def test_every_yaml_file_parses(path: Path) -> None:
    docs = _docs(path)
    assert docs, f"{path} holds no YAML document"
    assert all(isinstance(doc, dict) for doc in docs)


def test_every_k8s_document_has_api_version_kind_and_name() -> None:
    docs = _k8s_docs()
    assert docs
    for doc in docs:
        assert doc.get("apiVersion"), doc
        assert doc.get("kind"), doc
        assert doc.get("metadata", {}).get("name"), doc


def test_k8s_config_map_sets_only_real_settings() -> None:
    data = _k8s("ConfigMap", "churnwatch-config")["data"]
    known = {
        f"CHURNWATCH_{field.upper()}"
        for settings in (WorkerSettings, ApiSettings, DeliverySettings)
        for field in settings.model_fields
    }
    assert set(data) <= known, set(data) - known
    assert all(isinstance(value, str) for value in data.values())
    assert "CHURNWATCH_API_KEYS" not in data, "API key hashes belong in the Secret"


def test_the_api_trusts_the_host_of_the_public_url_links_point_to() -> None:
    # Delivery links to CHURNWATCH_PUBLIC_URL; a host the API does not trust would answer them 400.
    k8s = _k8s("ConfigMap", "churnwatch-config")["data"]
    services = _docs(COMPOSE)[0]["services"]
    deployments = [
        (k8s["CHURNWATCH_PUBLIC_URL"], k8s["CHURNWATCH_TRUSTED_HOSTS"]),
        (
            services["delivery"]["environment"]["CHURNWATCH_PUBLIC_URL"],
            services["api"]["environment"]["CHURNWATCH_TRUSTED_HOSTS"],
        ),
    ]
    for public_url, trusted in deployments:
        hosts = ApiSettings(trusted_hosts=trusted).trusted_hosts
        assert host_allowed(urlsplit(public_url).hostname or "", hosts), (public_url, hosts)
        assert "*" not in hosts


def test_k8s_embedded_rules_and_delivery_files_load() -> None:
    load_policy(_k8s("ConfigMap", "churnwatch-rules")["data"]["rules.toml"])
    config = load_delivery_config(_k8s("Secret", "churnwatch-delivery")["stringData"]["delivery.toml"])
    assert config.routes


def test_k8s_api_keys_secret_is_a_hash_map_the_api_accepts() -> None:
    raw = _k8s("Secret", "churnwatch-api-keys")["stringData"]["CHURNWATCH_API_KEYS"]
    keys = json.loads(raw)
    assert keys
    for digest, spec in keys.items():
        assert re.fullmatch(r"[0-9a-f]{64}", digest)
        assert spec["name"]
        assert isinstance(spec["scopes"], list)
    # Restrictions included: the API checks them at start-up and would refuse to run.
    assert set(ApiSettings(api_keys=keys).api_keys) == set(keys)


def test_k8s_workloads_reference_existing_config_and_have_resources() -> None:
    names = {(d["kind"], d["metadata"]["name"]) for d in _k8s_docs()}
    for workload in _workloads():
        spec = workload["spec"]["template"]["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True
        for container in spec["containers"]:
            for source in container.get("envFrom", []):
                if "configMapRef" in source:
                    assert ("ConfigMap", source["configMapRef"]["name"]) in names
                if "secretRef" in source:
                    assert ("Secret", source["secretRef"]["name"]) in names
            for key in ("requests", "limits"):
                assert {"cpu", "memory"} <= container["resources"][key].keys(), container["name"]
        for volume in spec.get("volumes", []):
            if "configMap" in volume:
                assert ("ConfigMap", volume["configMap"]["name"]) in names
            if "secret" in volume:
                assert ("Secret", volume["secret"]["secretName"]) in names


def test_k8s_scrape_annotations_match_the_container_ports() -> None:
    expected = {"churnwatch-worker": 9102, "churnwatch-api": 8000, "churnwatch-delivery": 9103}
    seen = {}
    for workload in _workloads():
        template = workload["spec"]["template"]
        annotations = template["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true"
        assert annotations["prometheus.io/path"] == "/metrics"
        port = int(annotations["prometheus.io/port"])
        ports = {p["containerPort"] for c in template["spec"]["containers"] for p in c.get("ports", [])}
        assert port in ports
        seen[workload["metadata"]["name"]] = port
    assert seen == expected


def test_k8s_worker_keeps_its_state_on_a_claim() -> None:
    worker = _k8s("StatefulSet", "churnwatch-worker")
    data_dir = _k8s("ConfigMap", "churnwatch-config")["data"]["CHURNWATCH_DATA_DIR"]
    assert worker["spec"]["replicas"] == 2
    claims = {c["metadata"]["name"] for c in worker["spec"]["volumeClaimTemplates"]}
    (container,) = worker["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["python", "-m", "streamer"]
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert mounts[data_dir] in claims
    rules_file = Path(_k8s("ConfigMap", "churnwatch-config")["data"]["CHURNWATCH_RULES_FILE"])
    assert mounts[str(rules_file.parent)] == "rules"


def test_k8s_api_probes_and_service() -> None:
    api = _k8s("Deployment", "churnwatch-api")
    (container,) = api["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["python", "-m", "api"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    service = _k8s("Service", "churnwatch-api")
    assert service["spec"]["selector"].items() <= api["spec"]["template"]["metadata"]["labels"].items()


def test_k8s_delivery_mounts_its_file_where_the_config_map_points() -> None:
    delivery = _k8s("Deployment", "churnwatch-delivery")
    (container,) = delivery["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["python", "-m", "streamer.delivery"]
    path = Path(_k8s("ConfigMap", "churnwatch-config")["data"]["CHURNWATCH_DELIVERY_FILE"])
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in delivery["spec"]["template"]["spec"]["volumes"]}
    assert volumes[mounts[str(path.parent)]]["secret"]["secretName"] == "churnwatch-delivery"
    assert path.name in _k8s("Secret", "churnwatch-delivery")["stringData"]


def test_alert_rules_are_complete_and_use_declared_metrics() -> None:
    rules = _alert_rules()
    assert {
        "ChurnwatchWorkerDown",
        "ChurnwatchConsumerLagGrowing",
        "ChurnwatchInvalidEventsToDlq",
        "ChurnwatchNoEvents",
        "ChurnwatchDeliveryDeadLettered",
        "ChurnwatchDeliveryDestinationDisabled",
    } <= {rule["alert"] for rule in rules}
    jobs = {job["job_name"] for job in _docs(PROMETHEUS)[0]["scrape_configs"]}
    for rule in rules:
        assert rule["for"], rule["alert"]
        assert rule["labels"]["severity"] in {"info", "warning", "critical"}
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]
        assert not _unknown_metrics(rule["expr"]), (rule["alert"], _unknown_metrics(rule["expr"]))
        for job in re.findall(r'job="([^"]+)"', rule["expr"]):
            assert job in jobs, (rule["alert"], job)


def test_prometheus_scrapes_every_process_and_loads_the_rules() -> None:
    (config,) = _docs(PROMETHEUS)
    assert any(Path(f).name == ALERTS.name for f in config["rule_files"])
    targets = {
        target
        for job in config["scrape_configs"]
        for static in job.get("static_configs", [])
        for target in static["targets"]
    }
    assert {"worker-1:9102", "worker-2:9102", "api:8000", "delivery:9103"} <= targets
    services = _docs(COMPOSE)[0]["services"]
    for target in targets - {"localhost:9090"}:
        assert target.split(":")[0] in services, target


def test_dashboard_targets_use_declared_metrics() -> None:
    panels = _dashboard_panels()
    assert panels
    exprs = []
    for panel in panels:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert _METRIC_REF.search(target["expr"]), (panel["title"], target["expr"])
            assert not _unknown_metrics(target["expr"]), (panel["title"], _unknown_metrics(target["expr"]))
            exprs.append(target["expr"])
    used = {name for expr in exprs for name in _METRIC_REF.findall(expr)}
    assert {
        "churnwatch_events_total",
        "churnwatch_consumer_lag",
        "churnwatch_event_time_lag_seconds_bucket",
        "churnwatch_alerts_total",
        "churnwatch_accounts_by_band",
        "churnwatch_api_requests_total",
        "churnwatch_api_request_seconds_bucket",
        "churnwatch_deliveries_total",
        "churnwatch_delivery_latency_seconds_bucket",
    } <= used


def test_grafana_provisioning_points_at_the_mounted_dashboards() -> None:
    provisioning = DEPLOY / "grafana" / "provisioning"
    (datasources,) = _docs(provisioning / "datasources" / "prometheus.yml")
    uid = datasources["datasources"][0]["uid"]
    for panel in _dashboard_panels():
        assert panel["datasource"]["uid"] == uid, panel["title"]
    (providers,) = _docs(provisioning / "dashboards" / "churnwatch.yml")
    path = providers["providers"][0]["options"]["path"]
    grafana = _docs(COMPOSE)[0]["services"]["grafana"]
    assert f"./grafana/dashboards:{path}:ro" in grafana["volumes"]


def test_compose_services_images_and_volumes() -> None:
    (compose,) = _docs(COMPOSE)
    services = compose["services"]
    assert {"kafka", "worker-1", "worker-2", "api", "delivery", "prometheus", "grafana"} <= services.keys()
    kafka = services["kafka"]
    assert kafka["image"] == "apache/kafka:4.1.0"
    assert kafka["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    required = {"KAFKA_NODE_ID", "KAFKA_LISTENERS", "KAFKA_CONTROLLER_QUORUM_VOTERS"}
    assert required <= kafka["environment"].keys()
    workers = [services["worker-1"], services["worker-2"]]
    assert workers[0]["environment"]["CHURNWATCH_APP_ID"] == workers[1]["environment"]["CHURNWATCH_APP_ID"]
    data_dir = workers[0]["environment"]["CHURNWATCH_DATA_DIR"]
    data_volumes = [
        next(v.split(":")[0] for v in w["volumes"] if v.split(":")[1] == data_dir) for w in workers
    ]
    assert len(set(data_volumes)) == 2
    for name in ("worker-1", "worker-2", "api", "delivery"):
        build = services[name]["build"]
        assert (DEPLOY / build["context"] / build["dockerfile"]).resolve() == DEPLOY / "Dockerfile"
    for service in services.values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), volume
            else:
                assert source in compose["volumes"], volume


def test_dockerfile_basics() -> None:
    text = (DEPLOY / "Dockerfile").read_text(encoding="utf-8")
    assert re.search(r"^FROM python:3\.11-slim\b", text, re.MULTILINE)
    assert "pip install ." in text
    user = re.findall(r"^USER\s+(\S+)", text, re.MULTILINE)
    assert user and not user[-1].startswith(("root", "0"))
    assert "CHURNWATCH_METRICS_HOST=0.0.0.0" in text
    assert "CHURNWATCH_API_HOST=0.0.0.0" in text
    for source in re.findall(r"^COPY\s+(?!--)(.+)\s+\S+$", text, re.MULTILINE):
        for path in source.split():
            assert (ROOT / path).exists(), path
