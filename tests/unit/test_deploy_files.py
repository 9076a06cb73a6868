"""The deploy files' invariants (infra/k8s, infra/docker), checked without a cluster or an engine:
every service in replicas behind a budget and an autoscaler, probes, pinned images, PgBouncer
in front of PostgreSQL with leases and LISTEN around it, Meilisearch as N nodes, and
PostgreSQL's max_connections large enough for the autoscalers' maximum (infra/DEPLOY.md,
"Connections"). The schemas themselves are checked by the linters DEPLOY.md names.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "infra" / "k8s"
DOCKER = ROOT / "infra" / "docker"
SERVICES = ("listing", "matching", "gateway")
PORTS = {"listing": 8001, "matching": 8002, "gateway": 8000}

# Connections one process holds on PostgreSQL itself (IPX_DATABASE_DIRECT_URL), at most: its
# LISTEN connections and the leases it may hold, measured by tests/perf/bench_connections.py
# (infra/DEPLOY.md, "Connections"). A replica that does not hold a lease opens its connection
# only to try the lock, then closes it; the budget counts it as held.
DIRECT_PER_PROCESS = {"listing": 2, "matching": 4, "gateway": 6}
# PostgreSQL's superuser_reserved_connections (default 3), the migration job and operators
# (psql, `ipx index rebuild`, backups).
RESERVED = 3 + 10


@cache
def documents() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for path in sorted(K8S.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if doc:
                found.append((path.name, doc))
    return found


def of_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for _, doc in documents() if doc["kind"] == kind}


def containers(workload: dict[str, Any]) -> list[dict[str, Any]]:
    spec = workload["spec"]["template"]["spec"]
    return [*spec.get("initContainers", []), *spec["containers"]]


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {item["name"]: item.get("value", item.get("valueFrom")) for item in container["env"]}


def config() -> dict[str, str]:
    data: dict[str, str] = of_kind("ConfigMap")["ipx-config"]["data"]
    return data


def pod_labels(workload: dict[str, Any]) -> dict[str, str]:
    labels: dict[str, str] = workload["spec"]["template"]["metadata"]["labels"]
    return labels


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


def pgbouncer_env(name: str) -> int:
    (container,) = of_kind("Deployment")["pgbouncer"]["spec"]["template"]["spec"]["containers"]
    return int(env_of(container)[name])


def test_every_manifest_is_in_the_kustomization() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text(encoding="utf-8"))
    listed = set(kustomization["resources"])
    on_disk = {path.name for path in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == on_disk


def test_each_service_is_a_deployment_of_several_replicas() -> None:
    deployments = of_kind("Deployment")
    assert set(SERVICES) <= set(deployments)
    for name, deployment in deployments.items():
        assert deployment["spec"]["replicas"] > 1, name
        strategy = deployment["spec"]["strategy"]["rollingUpdate"]
        assert strategy["maxUnavailable"] == 0, name  # a rollout never drops below the count


@pytest.mark.parametrize("service", SERVICES)
def test_services_are_probed_on_readyz_and_healthz(service: str) -> None:
    (container,) = of_kind("Deployment")[service]["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["ipx", "serve", service]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["ports"] == [{"name": "http", "containerPort": PORTS[service]}]


def test_every_long_running_container_has_probes_and_resources() -> None:
    for kind in ("Deployment", "StatefulSet"):
        for name, workload in of_kind(kind).items():
            for container in workload["spec"]["template"]["spec"]["containers"]:
                assert "readinessProbe" in container, (kind, name)
                assert "livenessProbe" in container, (kind, name)
                resources = container["resources"]
                assert {"cpu", "memory"} <= set(resources["requests"]), (kind, name)
                assert {"cpu", "memory"} <= set(resources["limits"]), (kind, name)


def test_every_deployment_has_a_disruption_budget_that_lets_a_drain_proceed() -> None:
    budgets = list(of_kind("PodDisruptionBudget").values())
    for name, deployment in of_kind("Deployment").items():
        matching = [
            pdb
            for pdb in budgets
            if selects(pdb["spec"]["selector"]["matchLabels"], pod_labels(deployment))
        ]
        assert len(matching) == 1, name
        spec = matching[0]["spec"]
        if "minAvailable" in spec:
            assert 1 <= spec["minAvailable"] < deployment["spec"]["replicas"], name
        else:
            assert spec["maxUnavailable"] >= 1, name


def test_every_service_deployment_scales_on_cpu_from_its_replica_count() -> None:
    """PgBouncer has none on purpose: each instance adds its MAX_DB_CONNECTIONS to PostgreSQL."""
    autoscalers = {
        hpa["spec"]["scaleTargetRef"]["name"]: hpa
        for hpa in of_kind("HorizontalPodAutoscaler").values()
    }
    deployments = of_kind("Deployment")
    assert set(autoscalers) == set(SERVICES)
    for name in SERVICES:
        hpa, deployment = autoscalers[name]["spec"], deployments[name]
        assert hpa["scaleTargetRef"]["kind"] == "Deployment"
        assert 1 < hpa["minReplicas"] == deployment["spec"]["replicas"] <= hpa["maxReplicas"]
        (metric,) = hpa["metrics"]
        assert metric["resource"]["name"] == "cpu"
        assert 0 < metric["resource"]["target"]["averageUtilization"] <= 100
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        assert "cpu" in container["resources"]["requests"]  # utilisation is a share of it


def image_pinned(image: str) -> bool:
    name, _, tag = image.rpartition(":")
    return bool(name) and "/" not in tag and tag not in ("", "latest")


def test_every_image_is_pinned_by_tag() -> None:
    for _, doc in documents():
        if doc["kind"] in ("Deployment", "StatefulSet", "Job"):
            for container in containers(doc):
                assert image_pinned(container["image"]), container["image"]
    compose = yaml.safe_load((DOCKER / "docker-compose.yml").read_text(encoding="utf-8"))
    for name, service in compose["services"].items():
        assert image_pinned(service["image"]), (name, service["image"])
    base = re.search(r"^FROM (\S+)", (DOCKER / "Dockerfile").read_text(), re.MULTILINE)
    assert base and image_pinned(base.group(1))


@pytest.mark.parametrize("image", ["ipx", "postgres:latest", "haproxy:", "registry:5000/x"])
def test_an_unpinned_image_is_refused(image: str) -> None:
    assert not image_pinned(image)


def test_services_pool_through_pgbouncer_and_hold_sessions_on_postgres() -> None:
    assert config()["IPX_DB_PGBOUNCER"] == "true"
    pgbouncer = of_kind("Service")["pgbouncer"]["spec"]["ports"][0]["port"]
    postgres = of_kind("Service")["postgres"]["spec"]["ports"][0]["port"]
    for name in SERVICES:
        (container,) = of_kind("Deployment")[name]["spec"]["template"]["spec"]["containers"]
        env = env_of(container)
        pooled, direct = urlsplit(env["IPX_DATABASE_URL"]), urlsplit(env["IPX_DATABASE_DIRECT_URL"])
        assert (pooled.hostname, pooled.port) == ("pgbouncer", pgbouncer), name
        assert (direct.hostname, direct.port) == ("postgres", postgres), name
        assert pooled.path == direct.path == "/ipx"
    (bouncer,) = of_kind("Deployment")["pgbouncer"]["spec"]["template"]["spec"]["containers"]
    assert env_of(bouncer)["POOL_MODE"] == "transaction"
    assert env_of(bouncer)["DB_HOST"] == "postgres"


def test_migrations_connect_to_postgres_directly() -> None:
    (container,) = of_kind("Job")["ipx-migrate"]["spec"]["template"]["spec"]["containers"]
    env = env_of(container)
    assert urlsplit(env["IPX_DATABASE_URL"]).hostname == "postgres"
    assert env["IPX_DB_PGBOUNCER"] == "false"


def test_every_secret_a_pod_reads_exists_and_the_gateway_has_its_keys() -> None:
    secret = of_kind("Secret")["ipx-secrets"]["stringData"]
    for _, doc in documents():
        if doc["kind"] in ("Deployment", "StatefulSet", "Job"):
            for container in containers(doc):
                for item in container.get("env", []):
                    ref = item.get("valueFrom", {}).get("secretKeyRef")
                    if ref:
                        assert ref["name"] == "ipx-secrets" and ref["key"] in secret, item
    (gateway,) = of_kind("Deployment")["gateway"]["spec"]["template"]["spec"]["containers"]
    assert "IPX_SECRET_KEYS" in env_of(gateway)  # the gateway refuses to start without


def test_every_service_selects_a_workload_and_a_named_port() -> None:
    workloads = [*of_kind("Deployment").values(), *of_kind("StatefulSet").values()]
    for name, service in of_kind("Service").items():
        chosen = [w for w in workloads if selects(service["spec"]["selector"], pod_labels(w))]
        assert len(chosen) == 1, name
        ports = {p["name"] for c in containers(chosen[0]) for p in c.get("ports", [])}
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in ports, (name, port)


def test_meilisearch_is_a_statefulset_of_several_nodes_each_with_a_volume() -> None:
    meili = of_kind("StatefulSet")["meilisearch"]["spec"]
    assert meili["replicas"] >= 2
    assert [claim["metadata"]["name"] for claim in meili["volumeClaimTemplates"]] == ["data"]
    headless = of_kind("Service")[meili["serviceName"]]["spec"]
    assert headless["clusterIP"] == "None"  # a stable name per node, no load balancing
    # The primary node and every other node as a read replica, each by its own name.
    url = urlsplit(config()["IPX_MEILI_URL"])
    assert url.hostname == f"meilisearch-0.{meili['serviceName']}"
    replicas = [urlsplit(u).hostname for u in config()["IPX_MEILI_REPLICA_URLS"].split(",")]
    assert replicas == [
        f"meilisearch-{n}.{meili['serviceName']}" for n in range(1, meili["replicas"])
    ]


def postgres_max_connections() -> int:
    (container,) = of_kind("StatefulSet")["postgres"]["spec"]["template"]["spec"]["containers"]
    args = container["args"]
    (setting,) = [args[i + 1] for i, arg in enumerate(args) if arg == "-c"]
    key, _, value = setting.partition("=")
    assert key == "max_connections"
    return int(value)


def test_postgres_holds_pgbouncer_and_every_replica_at_the_autoscalers_maximum() -> None:
    """DEPLOY.md's "Connections" table, from the manifests: PgBouncer's server connections
    (per instance) plus each service's direct connections at its autoscaler's maximum."""
    autoscalers = {
        hpa["spec"]["scaleTargetRef"]["name"]: hpa["spec"]["maxReplicas"]
        for hpa in of_kind("HorizontalPodAutoscaler").values()
    }
    bouncers = of_kind("Deployment")["pgbouncer"]["spec"]["replicas"]
    server = bouncers * pgbouncer_env("MAX_DB_CONNECTIONS")
    direct = sum(autoscalers[name] * DIRECT_PER_PROCESS[name] for name in SERVICES)
    assert server + direct + RESERVED <= postgres_max_connections()
    # PgBouncer's pools are not the limit: the reserve pool stays within max_db_connections.
    assert pgbouncer_env("DEFAULT_POOL_SIZE") + pgbouncer_env("RESERVE_POOL_SIZE") <= (
        pgbouncer_env("MAX_DB_CONNECTIONS")
    )
    # Every replica's whole pool (pool size + overflow) finds a client slot in one PgBouncer
    # (the Service may send them all to one instance).
    pool = int(config()["IPX_DB_POOL_SIZE"]) + int(config()["IPX_DB_MAX_OVERFLOW"])
    clients = sum(autoscalers[name] for name in SERVICES) * pool
    assert clients <= pgbouncer_env("MAX_CLIENT_CONN")


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((DOCKER / "docker-compose.yml").read_text("utf-8"))
    return data


def test_compose_runs_two_replicas_of_each_service_behind_the_proxy() -> None:
    services = compose()["services"]
    for name in SERVICES:
        assert services[name]["deploy"]["replicas"] >= 2, name
        assert "ports" not in services[name], name  # replicas cannot share a host port
        assert services[name]["command"] == ["ipx", "serve", name]
    published = {port.rsplit(":", 1)[-1] for port in services["proxy"]["ports"]}
    assert published == {str(port) for port in PORTS.values()}
    haproxy = (DOCKER / "haproxy.cfg").read_text(encoding="utf-8")
    for name, port in PORTS.items():
        assert f"bind :{port}\n    default_backend {name}" in haproxy
        backend = haproxy.split(f"\nbackend {name}\n", 1)[1].split("\nbackend ", 1)[0]
        assert "balance roundrobin" in backend and "option httpchk GET /readyz" in backend
        slots = re.search(rf"server-template {name} (\d+) {name}:{port}\b", backend)
        assert slots and int(slots.group(1)) >= services[name]["deploy"]["replicas"]


def test_compose_pools_through_pgbouncer_and_calls_services_through_the_proxy() -> None:
    services = compose()["services"]
    env = services["listing"]["environment"]
    assert urlsplit(env["IPX_DATABASE_URL"]).hostname == "pgbouncer"
    assert urlsplit(env["IPX_DATABASE_DIRECT_URL"]).hostname == "postgres"
    assert env["IPX_DB_PGBOUNCER"] == "true"
    for name, port in PORTS.items():
        assert env[f"IPX_{name.upper()}_URL"] == f"http://proxy:{port}"
    assert services["pgbouncer"]["environment"]["POOL_MODE"] == "transaction"
    migrate = services["migrate"]["environment"]
    assert urlsplit(migrate["IPX_DATABASE_URL"]).hostname == "postgres"
    assert migrate["IPX_DB_PGBOUNCER"] == "false"
    command = services["postgres"]["command"]
    max_connections = int(command[command.index("-c") + 1].partition("=")[2])
    bouncer = int(services["pgbouncer"]["environment"]["MAX_DB_CONNECTIONS"])
    direct = sum(2 * DIRECT_PER_PROCESS[name] for name in SERVICES)
    assert bouncer + direct + RESERVED <= max_connections
