"""The six images come from one recipe, services/Dockerfile, told which service to be by two build arguments:
docker-compose.yml must pass each service its own folder and port, and the recipe's rule for the package
(lead-service -> lead_service) must name the package that service really has."""
from __future__ import annotations

from pathlib import Path

import yaml

from salesflow_shared.runner import SERVICES

ROOT = Path(__file__).resolve().parents[2]


def test_compose_builds_every_service_from_the_one_dockerfile_with_its_folder_and_port() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    built = {name: spec for name, spec in compose.items() if "build" in spec}
    assert {spec["build"]["args"]["SERVICE"] for spec in built.values()} == {entry.name for entry in SERVICES}
    ports = {entry.name: str(entry.port) for entry in SERVICES}
    for name, spec in built.items():
        service = spec["build"]["args"]["SERVICE"]
        assert spec["build"]["dockerfile"] == "services/Dockerfile", name
        assert (ROOT / "services" / service / "pyproject.toml").is_file(), name
        # the port the image binds and probes is the one the container is reached on
        assert spec["build"]["args"]["PORT"] == ports[service] == spec["environment"]["SALESFLOW_PORT"], name
    assert not list((ROOT / "services").glob("*/Dockerfile"))  # no second recipe to drift apart


def test_the_dockerfile_names_each_service_package_from_its_folder() -> None:
    dockerfile = (ROOT / "services/Dockerfile").read_text()
    assert '"$(echo "$SALESFLOW_SERVICE" | tr - _).entrypoints.http:create_app"' in dockerfile
    for entry in SERVICES:
        assert entry.name.replace("-", "_") == entry.package
        assert (ROOT / "services" / entry.name / entry.package / "entrypoints/http.py").is_file()
