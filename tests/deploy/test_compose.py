"""Static checks of the Docker deployment: docker-compose.yml, Dockerfile and .dockerignore.

No Docker engine is needed: the files are parsed (PyYAML, tomllib) and checked against the project
itself (its console scripts, its packages, its ``Settings`` fields). Only
``test_docker_compose_config_accepts_the_file`` runs Docker Compose, and only where Compose v2 is
installed; it is an extra check, never a replacement for the static ones.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import fnmatch
import json
import re
import shlex
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from yadtq.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
PYPROJECT = ROOT / "pyproject.toml"

Services = dict[str, dict[str, Any]]

CLIENT_SERVICES = ("worker", "dashboard")
BACKING_SERVICES = ("kafka", "redis")


# ----------------------------------------------------------------------------- helpers
@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    assert isinstance(data, dict), "docker-compose.yml is not a mapping"
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> Services:
    svcs = compose.get("services")
    assert isinstance(svcs, dict) and svcs, "docker-compose.yml has no services"
    return svcs


@pytest.fixture(scope="module")
def pyproject() -> dict[str, Any]:
    return tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def console_scripts(pyproject: dict[str, Any]) -> set[str]:
    scripts = set(pyproject["project"]["scripts"])
    assert {"yadtq", "yadtq-worker", "yadtq-tui"} <= scripts
    return scripts


def interpolate(value: str) -> str:
    """Compose's ``${VAR:-default}`` / ``${VAR-default}`` / ``${VAR}`` with no VAR set."""
    return re.sub(r"\$\{[A-Za-z_][A-Za-z0-9_]*(?::?-([^}]*))?\}",
                  lambda m: m.group(1) or "", value)


def env_of(service: dict[str, Any]) -> dict[str, str]:
    """A service's ``environment`` as a dict (mapping or list form), interpolated with defaults."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        out = {}
        for item in env:
            key, sep, value = str(item).partition("=")
            out[key] = interpolate(value) if sep else ""
        return out
    return {str(k): "" if v is None else interpolate(str(v)) for k, v in env.items()}


def variables_read_by_the_programs() -> set[str]:
    """``YADTQ_*`` names the programs read outside ``Settings`` (``"YADTQ_TASKS"`` literals)."""
    names: set[str] = set()
    for package in ("yadtq", "worker", "yadtq_tui"):
        for source in (ROOT / package).rglob("*.py"):
            names |= set(re.findall(r"[\"'](YADTQ_[A-Z0-9_]+)[\"']", source.read_text("utf-8")))
    return names


def command_of(service: dict[str, Any]) -> list[str]:
    cmd = service.get("command")
    if cmd is None:
        return []
    return shlex.split(cmd) if isinstance(cmd, str) else [str(c) for c in cmd]


def duration_seconds(value: str | int | float) -> float:
    """Compose durations: ``30s``, ``1m30s``, ``1.5m``, ``500ms``, ``1h``."""
    if isinstance(value, int | float):
        return float(value)
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001, "us": 1e-6}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", value)
    assert parts and "".join(n + u for n, u in parts) == value, f"bad duration {value!r}"
    return sum(float(n) * units[u] for n, u in parts)


def healthcheck_command(service: dict[str, Any]) -> str:
    hc = service.get("healthcheck")
    assert isinstance(hc, dict), "no healthcheck"
    assert not hc.get("disable"), "healthcheck disabled"
    test = hc.get("test")
    assert test, "healthcheck has no test"
    if isinstance(test, str):
        return test
    assert test[0] in ("CMD", "CMD-SHELL"), f"healthcheck test must be CMD or CMD-SHELL: {test}"
    return " ".join(test[1:])


def dockerfile_instructions(path: Path = DOCKERFILE) -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` pairs, continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        if full:
            word, _, args = full.partition(" ")
            out.append((word.upper(), args.strip()))
    assert not pending, "Dockerfile ends with a continuation line"
    return out


def final_stage(instructions: list[tuple[str, str]]) -> list[tuple[str, str]]:
    starts = [i for i, (word, _) in enumerate(instructions) if word == "FROM"]
    assert starts, "Dockerfile has no FROM"
    return instructions[starts[-1]:]


def exec_form(args: str) -> list[str]:
    """``CMD ["a", "b"]`` or ``CMD a b`` as a list of words."""
    if args.startswith("["):
        value = json.loads(args)
        assert isinstance(value, list) and all(isinstance(v, str) for v in value)
        return value
    return shlex.split(args)


def copy_sources(instructions: list[tuple[str, str]]) -> list[str]:
    """Sources of every ``COPY``/``ADD`` from the build context (not ``--from=`` another stage)."""
    sources: list[str] = []
    for word, args in instructions:
        if word not in ("COPY", "ADD"):
            continue
        tokens = exec_form(args) if args.startswith("[") else shlex.split(args)
        flags = [t for t in tokens if t.startswith("--")]
        if any(f.startswith("--from") for f in flags):
            continue
        paths = [t for t in tokens if not t.startswith("--")]
        assert len(paths) >= 2, f"{word} {args}: needs a source and a destination"
        sources.extend(paths[:-1])
    return sources


def dockerignore_patterns() -> list[str]:
    lines = DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.strip().startswith("#")]


def dockerignored(rel_path: str, patterns: list[str]) -> bool:
    """Whether ``.dockerignore`` leaves ``rel_path`` (or a folder holding it) out of the context.

    Docker's rules, simplified: patterns are relative to the context root, ``**`` spans folders,
    a later ``!pattern`` re-includes, and excluding a folder excludes everything in it.
    """
    rel_path = rel_path.strip("/").removeprefix("./")
    parts = rel_path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pat = pattern[1:] if negate else pattern
        pat = pat.strip("/").removeprefix("./")
        variants = {pat}
        if pat.startswith("**/"):
            variants.add(pat[3:])
        if any(fnmatch.fnmatchcase(c, v) for c in candidates for v in variants):
            excluded = not negate
    return excluded


def settings_field_for(var: str) -> str:
    return var.removeprefix("YADTQ_").lower()


# ----------------------------------------------------------------------------- compose: shape
def test_compose_file_uses_the_compose_spec_without_version_key(compose: dict[str, Any]) -> None:
    assert "version" not in compose, "the `version:` key is obsolete in the Compose spec"


def test_expected_services_exist(services: Services) -> None:
    missing = {"kafka", "redis", "worker", "dashboard"} - set(services)
    assert not missing, f"missing services: {sorted(missing)}"


def test_no_zookeeper_anywhere(services: Services) -> None:
    for name, svc in services.items():
        assert "zookeeper" not in name.lower(), f"service {name!r} is a ZooKeeper"
        assert "zookeeper" not in str(svc.get("image", "")).lower(), f"{name}: ZooKeeper image"
        assert not any("ZOOKEEPER" in key.upper() for key in env_of(svc)), (
            f"{name}: ZooKeeper settings in a KRaft deployment")


# ----------------------------------------------------------------------------- kafka
def test_kafka_image_is_apache_kafka_4x(services: Services) -> None:
    image = services["kafka"].get("image", "")
    assert re.fullmatch(r"apache/kafka:4\.\d+(\.\d+)?", image), (
        f"kafka image should be apache/kafka with a pinned 4.x tag, got {image!r}")


def test_kafka_runs_kraft_combined_broker_and_controller(services: Services) -> None:
    env = env_of(services["kafka"])
    assert "KAFKA_ZOOKEEPER_CONNECT" not in env
    roles = {r.strip() for r in env.get("KAFKA_PROCESS_ROLES", "").split(",")}
    assert roles == {"broker", "controller"}, f"roles: {env.get('KAFKA_PROCESS_ROLES')!r}"

    node_id = env.get("KAFKA_NODE_ID")
    assert node_id and node_id.isdigit(), "KAFKA_NODE_ID must be set"

    listeners = dict(
        (name, port)
        for name, port in re.findall(r"([A-Z_]+)://[^:,]*:(\d+)", env.get("KAFKA_LISTENERS", "")))
    controller_names = env.get("KAFKA_CONTROLLER_LISTENER_NAMES", "").split(",")
    assert controller_names and controller_names[0] in listeners, (
        "KAFKA_LISTENERS must include the controller listener")
    controller_port = listeners[controller_names[0]]
    assert listeners.get("PLAINTEXT") == "9092", "the broker listens on PLAINTEXT://:9092"

    voters = env.get("KAFKA_CONTROLLER_QUORUM_VOTERS", "")
    assert voters == f"{node_id}@kafka:{controller_port}", (
        f"the single voter must be this node ({node_id}) on its controller port: {voters!r}")

    protocol_items = env.get("KAFKA_LISTENER_SECURITY_PROTOCOL_MAP", "").split(",")
    protocol_map = dict(item.split(":", 1) for item in protocol_items if ":" in item)
    assert set(listeners) <= set(protocol_map), "every listener needs a security protocol"
    assert env.get("KAFKA_ADVERTISED_LISTENERS") == "PLAINTEXT://kafka:9092"


def test_kafka_single_node_replication_and_topic_policy(services: Services) -> None:
    env = env_of(services["kafka"])
    assert env.get("KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR") == "1"
    assert env.get("KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR") == "1"
    assert env.get("KAFKA_TRANSACTION_STATE_LOG_MIN_ISR", "1") == "1"
    assert env.get("KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS") == "0"
    # YADTQ creates its own topics with the partitions it wants.
    assert env.get("KAFKA_AUTO_CREATE_TOPICS_ENABLE", "").lower() == "false"


def test_kafka_cluster_id_is_a_valid_kraft_uuid(services: Services) -> None:
    cluster_id = env_of(services["kafka"]).get("CLUSTER_ID")
    if cluster_id is None:
        return  # the image then uses its own default id, which is valid
    try:
        raw = base64.urlsafe_b64decode(cluster_id + "=" * (-len(cluster_id) % 4))
    except (binascii.Error, ValueError):
        raw = b""
    assert len(raw) == 16 and len(cluster_id) == 22, (
        f"CLUSTER_ID {cluster_id!r} is not a base64 UUID (kafka-storage.sh random-uuid)")


def test_kafka_keeps_its_log_dirs_on_a_named_volume(compose: dict[str, Any],
                                                     services: Services) -> None:
    kafka = services["kafka"]
    log_dirs = env_of(kafka).get("KAFKA_LOG_DIRS")
    assert log_dirs, "KAFKA_LOG_DIRS unset: the image would default to a path under /tmp"
    mounts = {}
    for vol in kafka.get("volumes", []):
        if isinstance(vol, str):
            source, _, target = vol.partition(":")
            mounts[target.split(":")[0]] = source
        else:
            mounts[vol["target"]] = vol.get("source")
    assert log_dirs in mounts, f"{log_dirs} is not on a volume"
    assert mounts[log_dirs] in (compose.get("volumes") or {}), "Kafka data needs a named volume"


# ----------------------------------------------------------------------------- redis
def test_redis_is_persistent(compose: dict[str, Any], services: Services) -> None:
    redis = services["redis"]
    assert str(redis.get("image", "")).startswith("redis:7"), redis.get("image")
    cmd = command_of(redis)
    assert "--appendonly" in cmd and cmd[cmd.index("--appendonly") + 1] == "yes", cmd
    sources = [v.split(":")[0] if isinstance(v, str) else v.get("source")
               for v in redis.get("volumes", [])
               if (v.split(":")[1] if isinstance(v, str) else v.get("target")) == "/data"]
    assert sources and sources[0] in (compose.get("volumes") or {}), "Redis needs a named volume"


# ----------------------------------------------------------------------------- health and order
@pytest.mark.parametrize(("name", "needle"), [
    ("kafka", "kafka-broker-api-versions.sh --bootstrap-server localhost:9092"),
    ("redis", "redis-cli ping"),
])
def test_backing_services_have_healthchecks(services: Services, name: str,
                                            needle: str) -> None:
    assert needle in healthcheck_command(services[name])
    hc = services[name]["healthcheck"]
    for key in ("interval", "timeout", "start_period"):
        if key in hc:
            assert duration_seconds(hc[key]) > 0, f"{name} healthcheck {key}={hc[key]!r}"
    assert int(hc.get("retries", 3)) >= 3


@pytest.mark.parametrize("name", CLIENT_SERVICES)
def test_clients_wait_for_healthy_kafka_and_redis(services: Services,
                                                  name: str) -> None:
    deps = services[name].get("depends_on")
    assert isinstance(deps, dict), f"{name}: depends_on must be the long form with conditions"
    for backing in BACKING_SERVICES:
        assert backing in deps, f"{name} does not depend on {backing}"
        assert deps[backing].get("condition") == "service_healthy", (
            f"{name} must wait for {backing} to be healthy, not merely started")


# ----------------------------------------------------------------------------- worker and dashboard
def test_worker_can_be_scaled(services: Services) -> None:
    worker = services["worker"]
    assert "container_name" not in worker, "container_name breaks `--scale worker=N`"
    assert "hostname" not in worker, "a fixed hostname would give every replica the same name"
    assert "ports" not in worker, "a host port binding breaks `--scale worker=N`"
    assert worker.get("network_mode") != "host"


def test_worker_shuts_down_warmly(services: Services) -> None:
    worker = services["worker"]
    assert command_of(worker)[:1] == ["yadtq-worker"]
    assert worker.get("restart") == "unless-stopped"
    assert worker.get("stop_signal", "SIGTERM") == "SIGTERM"
    assert duration_seconds(worker.get("stop_grace_period", "10s")) >= 30, (
        "stop_grace_period too short for a running task to finish")


def test_dashboard_is_interactive(services: Services) -> None:
    dashboard = services["dashboard"]
    assert command_of(dashboard)[:1] == ["yadtq-tui"]
    assert dashboard.get("stdin_open") is True and dashboard.get("tty") is True


@pytest.mark.parametrize("name", CLIENT_SERVICES)
def test_client_commands_are_console_scripts(services: Services, name: str,
                                             console_scripts: set[str]) -> None:
    cmd = command_of(services[name])
    assert cmd, f"{name} has no command"
    assert cmd[0] in console_scripts, f"{name} runs {cmd[0]!r}, not a console script"


@pytest.mark.parametrize("name", CLIENT_SERVICES)
def test_clients_point_at_the_compose_services(services: Services,
                                               name: str) -> None:
    env = env_of(services[name])
    assert env.get("YADTQ_KAFKA_BOOTSTRAP") == "kafka:9092"
    redis_url = urlsplit(env.get("YADTQ_REDIS_URL", ""))
    assert redis_url.scheme == "redis" and redis_url.hostname == "redis", env.get("YADTQ_REDIS_URL")
    assert redis_url.port in (None, 6379)
    # The values are accepted by the real settings loader.
    settings = Settings.from_env(env)
    assert settings.kafka_bootstrap == "kafka:9092"
    assert settings.redis_url == env["YADTQ_REDIS_URL"]


def test_every_yadtq_variable_is_a_settings_field(services: Services) -> None:
    """Each ``YADTQ_*`` name is a ``Settings`` field or one a program reads itself (TASKS)."""
    fields = {f.name for f in dataclasses.fields(Settings)}
    extra = variables_read_by_the_programs() - {"YADTQ_" + f.upper() for f in fields}
    used = set(re.findall(r"\bYADTQ_[A-Z0-9_]+", COMPOSE_FILE.read_text(encoding="utf-8")))
    for svc in services.values():
        used |= {k for k in env_of(svc) if k.startswith("YADTQ_")}
    assert {"YADTQ_KAFKA_BOOTSTRAP", "YADTQ_REDIS_URL"} <= used
    unknown = sorted(v for v in used if settings_field_for(v) not in fields and v not in extra)
    assert not unknown, f"neither Settings fields nor read by the programs (typo?): {unknown}"


# ----------------------------------------------------------------------------- build
def test_every_build_context_has_a_dockerfile(services: Services) -> None:
    built = {name: svc["build"] for name, svc in services.items() if "build" in svc}
    assert set(CLIENT_SERVICES) <= set(built), "worker and dashboard must be built from this repo"
    for name, build in built.items():
        context = build if isinstance(build, str) else build.get("context", ".")
        dockerfile = "Dockerfile"
        if isinstance(build, dict):
            dockerfile = build.get("dockerfile", dockerfile)
        path = (COMPOSE_FILE.parent / context / dockerfile).resolve()
        assert path.is_file(), f"{name}: no {dockerfile} in build context {context!r}"


def test_dockerfile_final_stage_is_python_311_slim_and_unbuffered() -> None:
    stage = final_stage(dockerfile_instructions())
    assert re.fullmatch(r"python:3\.11-slim(\S*)?", stage[0][1].split()[0]), stage[0][1]
    env_text = " ".join(args for word, args in stage if word == "ENV")
    assert re.search(r"\bPYTHONUNBUFFERED[= ]1\b", env_text), "ENV PYTHONUNBUFFERED=1 missing"


def test_dockerfile_runs_as_non_root() -> None:
    users = [args for word, args in final_stage(dockerfile_instructions()) if word == "USER"]
    assert users, "the final stage has no USER: it would run as root"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0"), f"USER {users[-1]} is root"


def test_dockerfile_installs_the_project(pyproject: dict[str, Any]) -> None:
    instructions = dockerfile_instructions()
    runs = " && ".join(args for word, args in instructions if word == "RUN")
    assert re.search(r"\bpip3? (install|wheel)\b[^&;]*\s\.(\s|$|&|;)", runs), (
        "no `pip install .` / `pip wheel .` of the project")
    assert re.search(r"\bpip3? install\b",
                     " ".join(a for w, a in final_stage(instructions) if w == "RUN")), (
        "the final stage installs nothing")

    copied = {s.strip("/").removeprefix("./") for s in copy_sources(instructions)}
    packages = [p.rstrip("*").rstrip(".") for p in
                pyproject["tool"]["setuptools"]["packages"]["find"]["include"]]
    needed = {"pyproject.toml", pyproject["project"]["readme"], *packages}
    assert needed <= copied, f"the build misses {sorted(needed - copied)}"


def test_dockerfile_copy_sources_exist() -> None:
    missing = [s for s in copy_sources(dockerfile_instructions()) if not (ROOT / s).exists()]
    assert not missing, f"COPY sources missing from the repo (the build would fail): {missing}"


def test_dockerfile_copy_sources_are_not_dockerignored() -> None:
    patterns = dockerignore_patterns()
    ignored = [s for s in copy_sources(dockerfile_instructions()) if dockerignored(s, patterns)]
    assert not ignored, f"COPY sources left out of the build context by .dockerignore: {ignored}"


def test_dockerfile_default_command_is_the_worker_script(console_scripts: set[str]) -> None:
    stage = final_stage(dockerfile_instructions())
    entry = [exec_form(a) for w, a in stage if w == "ENTRYPOINT"]
    cmd = [exec_form(a) for w, a in stage if w == "CMD"]
    assert entry or cmd, "no CMD or ENTRYPOINT"
    argv = (entry[-1] if entry else []) + (cmd[-1] if cmd else [])
    assert argv[0] in console_scripts, f"the image runs {argv[0]!r}, not a console script"
    assert argv[0] == "yadtq-worker"


def test_dockerignore_keeps_local_state_out_of_the_context() -> None:
    patterns = dockerignore_patterns()
    for path in (".venv/bin/python", ".local/services/x", ".git/HEAD", ".pytest_cache/v",
                 "scripts/kafka/target/libs/kafka.jar", "bench/results/run.json",
                 "yadtq/__pycache__/settings.cpython-311.pyc"):
        assert dockerignored(path, patterns), f"{path} would be sent to the Docker daemon"
    for path in ("pyproject.toml", "yadtq/settings.py", "worker/main.py", "yadtq_tui/app.tcss"):
        assert not dockerignored(path, patterns), f"{path} is needed by the build"


# ----------------------------------------------------------------------------- real Compose
def _compose_command() -> tuple[list[str] | None, str]:
    docker = shutil.which("docker")
    if docker:
        probe = subprocess.run([docker, "compose", "version", "--short"], capture_output=True,
                               text=True, timeout=30, check=False)
        if probe.returncode == 0:
            return [docker, "compose"], ""
    standalone = shutil.which("docker-compose")
    if standalone:
        probe = subprocess.run([standalone, "version", "--short"], capture_output=True, text=True,
                               timeout=30, check=False)
        if probe.returncode == 0 and probe.stdout.strip().lstrip("v").startswith("2"):
            return [standalone], ""
    where = "the docker CLI is present but has" if docker else "there is no docker CLI and"
    return None, (f"Docker Compose v2 is not installed ({where} no `compose` plugin, and no "
                  "docker-compose v2 on PATH); the static tests above still check the file")


def test_docker_compose_config_accepts_the_file() -> None:
    """Extra check with the real Compose parser. ``config`` reads files only: no engine needed."""
    command, reason = _compose_command()
    if command is None:
        pytest.skip(reason)
    result = subprocess.run([*command, "-f", str(COMPOSE_FILE), "--profile", "client", "config",
                             "-q"], capture_output=True, text=True, timeout=60, check=False,
                            cwd=ROOT)
    assert result.returncode == 0, result.stderr


# ----------------------------------------------------------------------------- profile "cluster"
CLUSTER_NODES = ("kafka-1", "kafka-2", "kafka-3")
CLUSTER_CLIENTS = ("worker-cluster", "dashboard-cluster")


def test_cluster_profile_has_three_kafka_nodes_and_its_own_clients(services: Services) -> None:
    profiled = {name for name, svc in services.items() if "cluster" in (svc.get("profiles") or [])}
    assert profiled == {*CLUSTER_NODES, *CLUSTER_CLIENTS}, profiled
    # the default `docker compose up` (no profile) is unchanged: one broker
    assert not services["kafka"].get("profiles") and not services["worker"].get("profiles")


def test_cluster_nodes_form_one_kraft_quorum(services: Services) -> None:
    envs = {name: env_of(services[name]) for name in CLUSTER_NODES}
    ids = {name: env["KAFKA_NODE_ID"] for name, env in envs.items()}
    assert sorted(ids.values()) == ["1", "2", "3"], ids
    cluster_ids = {env.get("CLUSTER_ID") for env in envs.values()}
    assert len(cluster_ids) == 1 and None not in cluster_ids, "one CLUSTER_ID for the three nodes"
    expected_voters = ",".join(f"{ids[name]}@{name}:9093" for name in CLUSTER_NODES)
    for name, env in envs.items():
        assert image_is_kafka_4(services[name])
        assert {r.strip() for r in env["KAFKA_PROCESS_ROLES"].split(",")} == {"broker", "controller"}
        assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == expected_voters, name
        assert re.search(r"CONTROLLER://[^,]*:9093", env["KAFKA_LISTENERS"]), name
        # each node advertises its own service name, never another node's or localhost
        assert env["KAFKA_ADVERTISED_LISTENERS"] == f"PLAINTEXT://{name}:9092", name
        assert "ZOOKEEPER" not in " ".join(env)


def image_is_kafka_4(service: dict[str, Any]) -> bool:
    return re.fullmatch(r"apache/kafka:4\.\d+(\.\d+)?", service.get("image", "")) is not None


def test_cluster_nodes_replicate_everything_3_times_with_min_isr_2(services: Services) -> None:
    for name in CLUSTER_NODES:
        env = env_of(services[name])
        assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "3", name
        assert env["KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"] == "3", name
        assert env["KAFKA_TRANSACTION_STATE_LOG_MIN_ISR"] == "2", name
        assert env["KAFKA_MIN_INSYNC_REPLICAS"] == "2", name
        assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"].lower() == "false", name


def test_cluster_nodes_have_their_own_named_volumes(compose: dict[str, Any],
                                                    services: Services) -> None:
    sources = []
    for name in CLUSTER_NODES:
        log_dirs = env_of(services[name])["KAFKA_LOG_DIRS"]
        mounts = {v.split(":")[1]: v.split(":")[0] for v in services[name]["volumes"]}
        assert log_dirs in mounts, name
        sources.append(mounts[log_dirs])
    assert len(set(sources)) == 3, f"nodes share a data volume: {sources}"
    assert set(sources) <= set(compose.get("volumes") or {})
    assert "kafka-data" not in sources, "the single broker's volume is not a cluster node's"


@pytest.mark.parametrize("name", CLUSTER_CLIENTS)
def test_cluster_clients_bootstrap_from_every_node_and_wait_for_all(services: Services,
                                                                    name: str) -> None:
    svc = services[name]
    env = env_of(svc)
    settings = Settings.from_env(env)
    assert sorted(settings.kafka_bootstrap.split(",")) == [f"{n}:9092" for n in CLUSTER_NODES]
    assert (settings.replication_factor, settings.min_insync_replicas) == (3, 2)
    assert urlsplit(settings.redis_url).hostname == "redis"
    deps = svc.get("depends_on")
    assert isinstance(deps, dict)
    for backing in (*CLUSTER_NODES, "redis"):
        assert deps.get(backing, {}).get("condition") == "service_healthy", (name, backing)
    assert "kafka" not in deps, "a cluster client must not wait for the single broker"
    assert command_of(svc)[:1] == (["yadtq-worker"] if name == "worker-cluster" else ["yadtq-tui"])
    assert svc.get("image") == services["worker"].get("image")


def test_cluster_worker_scales_and_stops_warmly(services: Services) -> None:
    worker = services["worker-cluster"]
    for key in ("container_name", "hostname", "ports"):
        assert key not in worker, f"{key} breaks --scale"
    assert worker.get("stop_signal", "SIGTERM") == "SIGTERM"
    assert duration_seconds(worker.get("stop_grace_period", "10s")) >= 30
