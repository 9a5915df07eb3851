"""Runs deploy/gateway/nginx.conf for real and checks what front-end teams rely on (deploy/validate.sh runs it).

The five upstream hosts are replaced by small local HTTP servers that answer with their own name, nginx listens
on a free loopback port, and the checks are: every docs/architecture.md prefix reaches its service (path and query
unchanged), an unknown path is a 404 problem+json, CORS preflights are answered for a configured origin and
not for another one (form submissions' preflights go to lead-service, which answers per form), a body over 1 MiB
is refused with 413 problem+json, /openapi.json is served.

Usage: python deploy/gateway_smoke.py [path/to/nginx]
"""
from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from check_manifests import PREFIXES

GATEWAY = Path(__file__).resolve().parent / "gateway"
ALLOWED_ORIGIN = "http://localhost:5173"  # matched by the localhost pattern in cors-origins.map


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def upstream(name: str) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            self.rfile.read(length)
            body = json.dumps({"service": name, "path": self.path}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_OPTIONS = _answer  # noqa: N815

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def request(url: str, method: str = "GET", headers: dict[str, str] | None = None,
            data: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, method=method, headers=headers or {}, data=data)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, {k.lower(): v for k, v in exc.headers.items()}, exc.read()


def prepare_gateway(work: Path, port: int, upstream_ports: dict[str, int], source_address: str | None = None) -> Path:
    """Write deploy/gateway's config into `work`, listening on 127.0.0.1:`port`, each service's upstream
    replaced by 127.0.0.1:<its port>. `source_address` makes nginx connect to the services from that local
    address (as the gateway container has its own address in docker-compose). Returns the config path."""
    os.chmod(work, 0o755)  # nginx workers run as an unprivileged user
    conf = (GATEWAY / "nginx.conf").read_text()
    for service, upstream_port in upstream_ports.items():
        conf = re.sub(rf"\b{service}:\d+;", f"127.0.0.1:{upstream_port};", conf)
    conf = (conf.replace("listen 8080;", f"listen 127.0.0.1:{port};")
            .replace("pid /tmp/nginx.pid;", f"pid {work}/nginx.pid;")
            .replace("/usr/share/salesflow/openapi.json", f"{work}/openapi.json"))
    if source_address:
        conf = conf.replace("proxy_pass http://$salesflow_upstream;",
                            f"proxy_bind {source_address};\n            proxy_pass http://$salesflow_upstream;")
        assert source_address in conf, "the gateway config no longer has the proxy_pass this replaces"
    (work / "nginx.conf").write_text(conf)
    for included in ("cors-origins.map", "proxy.conf"):
        shutil.copy(GATEWAY / included, work / included)
    (work / "openapi.json").write_text('{"openapi": "3.1.0"}')
    os.chmod(work / "openapi.json", 0o644)
    return work / "nginx.conf"


def start_gateway(nginx: str, work: Path, port: int) -> subprocess.Popen:
    """Run nginx on the prepared config and wait until it answers /healthz."""
    process = subprocess.Popen([nginx, "-p", str(work), "-c", str(work / "nginx.conf"), "-g", "daemon off;"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 10
    while True:
        try:
            if request(f"http://127.0.0.1:{port}/healthz")[0] == 200:
                return process
        except OSError:
            pass
        if time.monotonic() > deadline or process.poll() is not None:
            process.kill()
            raise SystemExit(f"nginx did not start: {process.stderr.read().decode() if process.stderr else ''}")
        time.sleep(0.1)


def main(nginx: str) -> int:
    servers = {service: upstream(service) for service in PREFIXES}
    work = Path(tempfile.mkdtemp(prefix="sf-gateway-"))
    port = free_port()
    prepare_gateway(work, port, {service: server.server_address[1] for service, server in servers.items()})
    process = start_gateway(nginx, work, port)
    base = f"http://127.0.0.1:{port}"
    failures: list[str] = []

    def check(condition: bool, what: str) -> None:
        if not condition:
            failures.append(what)

    try:
        for service, prefixes in PREFIXES.items():
            for prefix in prefixes:
                status, _, body = request(f"{base}/v1/{prefix}/x-1?limit=5")
                check(status == 200 and json.loads(body) == {"service": service, "path": f"/v1/{prefix}/x-1?limit=5"},
                      f"/v1/{prefix} did not reach {service}: {status} {body[:100]!r}")
        status, headers, body = request(f"{base}/v1/leadsx")
        check(status == 404 and headers.get("content-type") == "application/problem+json",
              f"an unknown prefix gave {status} {headers.get('content-type')}")
        status, headers, _ = request(f"{base}/v1/leads", "OPTIONS", {
            "Origin": ALLOWED_ORIGIN, "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,idempotency-key"})
        check(status == 204 and headers.get("access-control-allow-origin") == ALLOWED_ORIGIN
              and "Idempotency-Key" in headers.get("access-control-allow-headers", ""),
              f"preflight from a configured origin: {status} {headers}")
        status, headers, _ = request(f"{base}/v1/leads", "OPTIONS", {"Origin": "https://evil.example"})
        check("access-control-allow-origin" not in headers, "an unlisted origin got Access-Control-Allow-Origin")
        # Form submissions: lead-service answers CORS per form, so preflights pass through untouched.
        status, headers, body = request(f"{base}/v1/forms/f-1/submissions", "OPTIONS", {
            "Origin": "https://www.customer.example", "Access-Control-Request-Method": "POST"})
        check(status == 200 and json.loads(body)["service"] == "lead-service"
              and "access-control-allow-origin" not in headers,
              f"a submission preflight did not reach lead-service untouched: {status} {headers}")
        _, headers, _ = request(f"{base}/v1/leads", headers={"Origin": ALLOWED_ORIGIN})
        check(headers.get("access-control-allow-origin") == ALLOWED_ORIGIN, "a simple request got no CORS header")
        status, headers, body = request(f"{base}/v1/leads", "POST", {"Content-Type": "application/json"},
                                        b"x" * (1024 * 1024 + 1))
        check(status == 413 and headers.get("content-type") == "application/problem+json",
              f"a body over 1 MiB gave {status}")
        status, _, _ = request(f"{base}/v1/leads", "POST", {"Content-Type": "application/json"}, b"x" * 1000)
        check(status == 200, f"a small body gave {status}")
        status, _, body = request(f"{base}/openapi.json")
        check(status == 200 and json.loads(body)["openapi"] == "3.1.0", f"/openapi.json gave {status}")
    finally:
        process.terminate()
        process.wait(timeout=10)
        for server in servers.values():
            server.shutdown()
        shutil.rmtree(work, ignore_errors=True)
    for failure in failures:
        print(f"  {failure}", file=sys.stderr)
    print(f"gateway smoke test: {'OK' if not failures else f'{len(failures)} failure(s)'}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else shutil.which("nginx") or "/usr/sbin/nginx"))
