"""Runs deploy/gateway/nginx.conf for real and checks what front-end teams rely on (deploy/validate.sh runs it).

The five upstream hosts are replaced by small local HTTP servers that answer with their own name, nginx listens
on a free loopback port, and the checks are: every DESIGN.md prefix reaches its service (path and query
unchanged), an unknown path is a 404 problem+json, CORS preflights are answered for a configured origin and
not for another one, a body over 1 MiB is refused with 413 problem+json, /openapi.json is served.

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

        do_GET = do_POST = _answer  # noqa: N815

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


def main(nginx: str) -> int:
    servers = {service: upstream(service) for service in PREFIXES}
    work = Path(tempfile.mkdtemp(prefix="sf-gateway-"))
    os.chmod(work, 0o755)  # nginx workers run as an unprivileged user
    port = free_port()
    conf = (GATEWAY / "nginx.conf").read_text()
    for service, server in servers.items():
        conf = re.sub(rf"\b{service}:\d+;", f"127.0.0.1:{server.server_address[1]};", conf)
    conf = (conf.replace("listen 8080;", f"listen 127.0.0.1:{port};")
            .replace("pid /tmp/nginx.pid;", f"pid {work}/nginx.pid;")
            .replace("/usr/share/salesflow/openapi.json", f"{work}/openapi.json"))
    (work / "nginx.conf").write_text(conf)
    shutil.copy(GATEWAY / "cors-origins.map", work / "cors-origins.map")
    (work / "openapi.json").write_text('{"openapi": "3.1.0"}')
    os.chmod(work / "openapi.json", 0o644)
    process = subprocess.Popen([nginx, "-p", str(work), "-c", str(work / "nginx.conf"), "-g", "daemon off;"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    failures: list[str] = []

    def check(condition: bool, what: str) -> None:
        if not condition:
            failures.append(what)

    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                if request(f"{base}/healthz")[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline or process.poll() is not None:
                raise SystemExit(f"nginx did not start: {process.stderr.read().decode() if process.stderr else ''}")
            time.sleep(0.1)
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
