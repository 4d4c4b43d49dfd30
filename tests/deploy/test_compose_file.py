"""``docker-compose.observability.yml`` is a valid compose file, checked without Docker.

No ``docker compose config``: the suite must not depend on a client someone
installed by hand, and this test runs (never skips) wherever PyYAML imports.
It checks the subset of the compose specification the file uses, strictly (an
unknown or misspelt key fails), and what Docker would only find at ``up`` time:
every bind-mounted path exists in the repository, the config files the
commands name are inside a mount, named volumes are declared, ``depends_on``
names a service that starts with it (always on, or sharing a profile: compose
enables only the profiles asked for, not those of dependencies), no host port is published twice, images
are pinned to a version.
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.observability.yml"

TOP_LEVEL = {"name", "services", "volumes", "networks", "configs", "secrets"}
SERVICE_KEYS = {
    "build",
    "image",
    "command",
    "entrypoint",
    "environment",
    "env_file",
    "ports",
    "volumes",
    "depends_on",
    "profiles",
    "healthcheck",
    "restart",
    "user",
    "working_dir",
    "networks",
    "labels",
}
PORT = re.compile(r"^(?:(?P<ip>[0-9.]+):)?(?P<host>\d{1,5}):(?P<container>\d{1,5})(?:/(?:tcp|udp))?$")
VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?[-?+][^}]*)?\}|\$\$|\$([A-Za-z_][A-Za-z0-9_]*)")
IMAGE = re.compile(r"^[a-z0-9./_-]+:(?P<tag>[A-Za-z0-9._-]+)$")


def load(text: str) -> dict[str, Any]:
    data = yaml.safe_load(text)
    assert isinstance(data, dict), "the compose file must be a mapping"
    return data


def problems(data: dict[str, Any], root: Path) -> list[str]:
    """Everything wrong with the compose document ``data`` whose paths are relative to ``root``."""
    found: list[str] = []
    unknown = set(data) - TOP_LEVEL
    if unknown:
        found.append(f"unknown top-level keys {sorted(unknown)}")
    services = data.get("services")
    if not isinstance(services, dict) or not services:
        return [*found, "'services' must be a non-empty mapping"]
    declared_volumes = set(data.get("volumes") or {})
    host_ports: dict[int, str] = {}
    for name, service in services.items():
        where = f"services.{name}"
        if not isinstance(service, dict):
            found.append(f"{where} must be a mapping")
            continue
        unknown = set(service) - SERVICE_KEYS
        if unknown:
            found.append(f"{where}: unknown keys {sorted(unknown)}")
        found += _image_or_build(where, service, root)
        found += _strings(where, "command", service.get("command"))
        found += _environment(where, service.get("environment"))
        for port in service.get("ports") or []:
            match = PORT.match(str(port))
            if match is None or not (0 < int(match["host"]) < 65536 and 0 < int(match["container"]) < 65536):
                found.append(f"{where}.ports: {port!r} is not HOST:CONTAINER")
            elif int(match["host"]) in host_ports:
                owner = host_ports[int(match["host"])]
                found.append(f"{where}.ports: host port {match['host']} also published by {owner}")
            else:
                host_ports[int(match["host"])] = name
        mounts: dict[PurePosixPath, Path] = {}
        for volume in service.get("volumes") or []:
            found += _volume(where, str(volume), root, declared_volumes, mounts)
        found += _command_files(where, service, mounts)
        profiles = service.get("profiles")
        if profiles is not None and not (
            isinstance(profiles, list) and all(isinstance(p, str) for p in profiles)
        ):
            found.append(f"{where}.profiles must be a list of names")
        depends = service.get("depends_on") or []
        for other in depends if isinstance(depends, list) else list(depends):
            if other not in services:
                found.append(f"{where}.depends_on: no service {other!r}")
            elif services[other].get("profiles") and not set(services[other]["profiles"]) & set(
                profiles or []
            ):
                found.append(
                    f"{where}.depends_on: {other!r} only starts with profile {services[other]['profiles']}"
                )
    return found


def _image_or_build(where: str, service: dict[str, Any], root: Path) -> list[str]:
    if "build" in service:
        build = service["build"]
        context = build if isinstance(build, str) else build.get("context", ".")
        dockerfile = "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
        if not (root / context / dockerfile).is_file():
            return [f"{where}.build: no {dockerfile} in {context!r}"]
        return []
    image = service.get("image")
    if not isinstance(image, str):
        return [f"{where}: needs 'image' or 'build'"]
    match = IMAGE.match(image)
    if match is None or match["tag"] == "latest":
        return [f"{where}.image: {image!r} is not pinned to a version tag"]
    return []


def _strings(where: str, key: str, value: Any) -> list[str]:
    if value is None or isinstance(value, str):
        return []
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return []
    return [f"{where}.{key} must be a string or a list of strings"]


def _environment(where: str, environment: Any) -> list[str]:
    if environment is None:
        return []
    if not isinstance(environment, dict):
        return [f"{where}.environment must be a mapping"]
    found = []
    for key, value in environment.items():
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", str(key)):
            found.append(f"{where}.environment: {key!r} is not a variable name")
        if isinstance(value, bool):
            # YAML turns an unquoted true into a boolean, which compose refuses for environment values.
            found.append(f"{where}.environment.{key}: quote {str(value).lower()!r}")
        elif isinstance(value, str):
            leftover = VARIABLE.sub("", value)
            if "$" in leftover:
                found.append(f"{where}.environment.{key}: malformed variable in {value!r}")
    return found


def _volume(
    where: str, volume: str, root: Path, declared: set[str], mounts: dict[PurePosixPath, Path]
) -> list[str]:
    parts = volume.split(":")
    if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] not in ("ro", "rw")):
        return [f"{where}.volumes: {volume!r} is not SOURCE:TARGET[:ro|rw]"]
    source, target = parts[0], PurePosixPath(parts[1])
    if not target.is_absolute():
        return [f"{where}.volumes: the target of {volume!r} is not an absolute path"]
    if source.startswith((".", "/")):
        host = (root / source).resolve()
        if not host.exists():
            return [f"{where}.volumes: {source!r} does not exist"]
        mounts[target] = host
        return []
    if source not in declared:
        return [f"{where}.volumes: named volume {source!r} is not declared under 'volumes'"]
    return []


def _command_files(where: str, service: dict[str, Any], mounts: dict[PurePosixPath, Path]) -> list[str]:
    """Each ``--config.file=/path``-style argument names a file that a bind mount provides."""
    command = service.get("command") or []
    found = []
    for argument in command if isinstance(command, list) else command.split():
        match = re.match(r"^--config(?:\.file)?=(?P<path>/\S+)$", argument)
        if match is None:
            continue
        path = PurePosixPath(match["path"])
        host = next(
            (
                base / path.relative_to(target)
                for target, base in mounts.items()
                if path.is_relative_to(target)
            ),
            None,
        )
        if host is None or not host.is_file():
            found.append(f"{where}.command: {path} is not provided by any mount")
    return found


def test_the_shipped_compose_file_is_valid() -> None:
    data = load(COMPOSE.read_text())
    assert problems(data, ROOT) == []
    # The stack the docs promise.
    assert {"app", "prometheus", "alertmanager", "grafana"} <= set(data["services"])
    assert "profiles" not in data["services"]["app"]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda d: d["services"]["grafana"].update(imag="grafana/grafana:11.2.0"), "unknown keys ['imag']"),
        (lambda d: d["services"]["grafana"].update(image="grafana/grafana:latest"), "not pinned"),
        (lambda d: d["services"]["grafana"].update(image="grafana/grafana"), "not pinned"),
        (
            lambda d: d["services"]["prometheus"]["volumes"].append("./deploy/nope:/x:ro"),
            "'./deploy/nope' does not",
        ),
        (lambda d: d["services"]["app"]["volumes"].append("other-data:/y"), "'other-data' is not declared"),
        (
            lambda d: d["services"]["grafana"]["ports"].append("8000:3001"),
            "host port 8000 also published by app",
        ),
        (lambda d: d["services"]["grafana"]["ports"].append("3000"), "'3000' is not HOST:CONTAINER"),
        (lambda d: d["services"]["grafana"]["depends_on"].append("promethus"), "no service 'promethus'"),
        (
            lambda d: d["services"]["grafana"]["depends_on"].append("jaeger"),
            "'jaeger' only starts with profile",
        ),
        (lambda d: d["services"]["grafana"]["environment"].update(GF_X=True), "quote 'true'"),
        (lambda d: d["services"]["app"]["environment"].update(X="${ADMIN_TOKEN"), "malformed variable"),
        (
            lambda d: d["services"]["prometheus"]["command"].__setitem__(0, "--config.file=/etc/other/p.yml"),
            "/etc/other/p.yml is not provided by any mount",
        ),
        (lambda d: d.update(service={}), "unknown top-level keys ['service']"),
    ],
)
def test_each_mistake_is_named(change: Any, expected: str) -> None:
    """The checker is not a rubber stamp: each broken copy of the real file gives its precise message."""
    data = load(COMPOSE.read_text())
    change(data)
    found = problems(data, ROOT)
    assert any(expected in problem for problem in found), found
