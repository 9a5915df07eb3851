"""deploy/gateway/nginx.conf run for real in front of services under test (tests/security).

nginx is started by deploy/gateway_smoke.py's own helpers (the config is the deployed one, upstreams pointed
at local ports). A missing nginx fails the test: `.ci/run` installs it on a new machine.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
sys.path.insert(0, str(DEPLOY))

import gateway_smoke  # noqa: E402  (deploy/ is not a package)
from check_manifests import PREFIXES  # noqa: E402


def nginx_binary() -> str:
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    assert found, "nginx is not installed (`.ci/run` installs Debian's nginx-light)"
    return found


@contextmanager
def running_gateway(lead_port: int, source_address: str) -> Iterator[str]:
    """The gateway on a free loopback port, lead-service's routes sent to `lead_port` from `source_address`
    (the gateway's own address, as in docker-compose). Yields its base URL."""
    work = Path(tempfile.mkdtemp(prefix="sf-gateway-test-"))
    port = gateway_smoke.free_port()
    gateway_smoke.prepare_gateway(work, port, {service: lead_port for service in PREFIXES}, source_address)
    process: subprocess.Popen = gateway_smoke.start_gateway(nginx_binary(), work, port)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)
        shutil.rmtree(work, ignore_errors=True)
