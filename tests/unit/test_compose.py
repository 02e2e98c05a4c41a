"""The compose stack: three KRaft brokers (RF 3, min ISR 2), two workers with their own volumes.

Docker does not run here, so the file's structure, its references and the settings it
passes are checked; with a `docker compose` client at hand, `docker compose config` must accept it too.
"""
from __future__ import annotations

import shutil
import subprocess

import yaml

from app.settings import Settings
from tests.conftest import ROOT

COMPOSE = ROOT / "compose" / "docker-compose.yml"


def services() -> dict:
    return yaml.safe_load(COMPOSE.read_text())["services"]


def test_three_kraft_brokers_replicate_three_ways_with_two_in_sync():
    brokers = {n: s for n, s in services().items() if n.startswith("kafka")}
    assert sorted(brokers) == ["kafka1", "kafka2", "kafka3"]
    ids = set()
    for name, svc in brokers.items():
        env = svc["environment"]
        ids.add(env["KAFKA_NODE_ID"])
        assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == "1@kafka1:9093,2@kafka2:9093,3@kafka3:9093"
        assert env["KAFKA_ADVERTISED_LISTENERS"] == f"PLAINTEXT://{name}:9092"
        assert (env["KAFKA_DEFAULT_REPLICATION_FACTOR"], env["KAFKA_MIN_INSYNC_REPLICAS"]) == ("3", "2")
        assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
        assert svc["image"].startswith("apache/kafka:4.1")
        assert "healthcheck" in svc and svc["volumes"] == [f"{name}-data:/var/lib/kafka/data"]
    assert ids == {"1", "2", "3"}


def test_two_workers_with_their_own_volume_and_port_and_valid_settings(tmp_path):
    workers = {n: s for n, s in services().items() if n.startswith("worker")}
    assert len(workers) == 2
    volumes = [w["volumes"][0].split(":")[0] for w in workers.values()]
    ports = [w["ports"][0].split(":")[0] for w in workers.values()]
    assert len(set(volumes)) == 2 and len(set(ports)) == 2
    declared = yaml.safe_load(COMPOSE.read_text())["secrets"]
    for w in workers.values():
        env = {k: str(v) for k, v in w["environment"].items()}
        # token files and the cluster secret are compose secrets, mounted under /run/secrets
        for k, v in env.items():
            if v.startswith("/run/secrets/"):
                name = v.rsplit("/", 1)[1]
                assert name in w["secrets"] and name in declared, f"{k}: secret {name} is not given to the worker"
                env[k] = str(tmp_path / name)
                (tmp_path / name).write_text("")
        assert {"FLOWSIGHT_SENSOR_TOKENS", "FLOWSIGHT_API_TOKENS", "FLOWSIGHT_CLUSTER_SECRET_FILE"} <= set(env)
        s = Settings.from_env(env)   # raises on a bad setting
        assert s.auth
        assert s.replication == 3 and len(s.broker_servers) == 3
        assert s.placebo_source and s.placebo_sink
        assert "/readyz" in " ".join(w["healthcheck"]["test"])
        assert set(w["depends_on"]) == {"kafka1", "kafka2", "kafka3"}
        assert w["build"]["dockerfile"] == "compose/Dockerfile"
    dockerfile = (ROOT / "compose" / "Dockerfile").read_text()
    assert 'CMD ["faust", "-A", "app", "worker"' in dockerfile and "EXPOSE 6066" in dockerfile


def test_every_reference_resolves_and_docker_compose_accepts_the_file():
    """Named volumes and depends_on point at declared things; with a `docker compose` client at hand
    (there is none on the CI machine), `docker compose config` must accept the file too."""
    doc = yaml.safe_load(COMPOSE.read_text())
    declared = set(doc["volumes"])
    for name, svc in doc["services"].items():
        for vol in svc.get("volumes", []):
            assert vol.split(":")[0] in declared, f"{name}: volume {vol} is not declared"
        assert set(svc.get("depends_on", {})) <= set(doc["services"]), name
        assert "image" in svc or "build" in svc, name
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        r = subprocess.run([docker, "compose", "-f", str(COMPOSE), "config", "-q"], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
