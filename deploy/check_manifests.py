"""Checks the rendered Kubernetes manifests for what schemas cannot see (run by deploy/validate.sh).

Usage: python deploy/check_manifests.py RENDERED.yaml NGINX_CONF

- every service has a Deployment, Service, HorizontalPodAutoscaler, PodDisruptionBudget and migration Job;
- metrics-service's projector has its own Deployment (SALESFLOW_PROJECTOR=only, the API pods "separate");
- each Deployment: requests and limits, liveness on /healthz, readiness on /readyz, a preStop hook and a grace
  period longer than it, migrations off (SALESFLOW_MIGRATE_ON_START=false), secrets only by reference;
- no Secret object is shipped, and no SALESFLOW_*URL/SECRET/PASSWORD variable has a literal value;
- the Ingress and the nginx gateway route exactly the API prefixes of docs/architecture.md, each to its service.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

import yaml

# docs/architecture.md, "Services, ports, ownership": the API prefixes each service owns (incentive-service came later).
PREFIXES: dict[str, list[str]] = {
    "lead-service": ["leads", "contacts", "companies", "activities", "forms", "imports", "scoring-rules"],
    "pipeline-service": ["pipelines", "positions", "tasks"],
    "assignment-service": ["reps", "teams", "territories", "routing-rules", "assignments", "routing"],
    "notification-service": ["templates", "sequences", "mailchimp", "milestones", "deliveries",
                             "webhook-subscriptions"],
    "metrics-service": ["reports", "quotas", "forecasts", "reporting-currency", "exchange-rates"],
    "incentive-service": ["payees", "plans", "statements", "disputes", "payouts", "credits", "programs"],
}
SENSITIVE = re.compile(r"(SECRET|PASSWORD|TOKEN|_KEY|DATABASE_URL|AMQP_URL|USERNAME)$")


def check(docs: list[dict], nginx_conf: str) -> list[str]:
    errors: list[str] = []
    by_kind: dict[tuple[str, str], dict] = {(d["kind"], d["metadata"]["name"]): d for d in docs}
    for kind, _ in by_kind:
        if kind == "Secret":
            errors.append("a Secret is shipped in the manifests; reference externally managed Secrets instead")
    for service in PREFIXES:
        for kind, name in [("Deployment", service), ("Service", service), ("HorizontalPodAutoscaler", service),
                           ("PodDisruptionBudget", service), ("Job", f"{service}-migrate")]:
            if (kind, name) not in by_kind:
                errors.append(f"{service}: no {kind} named {name}")
        deployment = by_kind.get(("Deployment", service))
        if deployment is not None:
            errors += [f"{service}: {e}" for e in _check_pod(deployment["spec"]["template"]["spec"], service)]
        job = by_kind.get(("Job", f"{service}-migrate"))
        if job is not None:
            command = job["spec"]["template"]["spec"]["containers"][0].get("command", [])
            if command[:3] != ["salesflow", "migrate", service]:
                errors.append(f"{service}: the migration Job runs {command}, not `salesflow migrate {service}`")
    errors += _check_projector(by_kind)
    errors += _check_ingress(by_kind.get(("Ingress", "salesflow-gateway")))
    errors += _check_nginx(nginx_conf)
    return errors


def _check_pod(pod: dict, service: str) -> list[str]:
    errors = []
    container = pod["containers"][0]
    resources = container.get("resources", {})
    for part in ("requests", "limits"):
        for resource in ("cpu", "memory"):
            if resource not in resources.get(part, {}):
                errors.append(f"no {resource} {part}")
    if container.get("livenessProbe", {}).get("httpGet", {}).get("path") != "/healthz":
        errors.append("liveness probe is not GET /healthz")
    if container.get("readinessProbe", {}).get("httpGet", {}).get("path") != "/readyz":
        errors.append("readiness probe is not GET /readyz")
    pre_stop = container.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
    if not pre_stop:
        errors.append("no preStop hook")
    grace = pod.get("terminationGracePeriodSeconds", 30)
    if pre_stop[:1] == ["sleep"] and grace <= int(pre_stop[1]) + 25:
        errors.append(f"terminationGracePeriodSeconds {grace} leaves no room for the 25 s graceful shutdown")
    env = {e["name"]: e for e in container.get("env", [])}
    if env.get("SALESFLOW_MIGRATE_ON_START", {}).get("value") != "false":
        errors.append("SALESFLOW_MIGRATE_ON_START is not \"false\" (the migration Job migrates)")
    for name, var in env.items():
        if SENSITIVE.search(name) and "value" in var:
            errors.append(f"{name} has a literal value; use a secretKeyRef")
    database = env.get("SALESFLOW_DATABASE_URL", {}).get("valueFrom", {}).get("secretKeyRef", {})
    if database.get("name") != f"{service}-database":
        errors.append(f"SALESFLOW_DATABASE_URL does not come from the Secret {service}-database")
    if not any("configMapRef" in source for source in container.get("envFrom", [])):
        errors.append("no ConfigMap in envFrom")
    return errors


def _check_projector(by_kind: dict[tuple[str, str], dict]) -> list[str]:
    """metrics-service's projector runs in its own Deployment, and only there."""
    projector = by_kind.get(("Deployment", "metrics-projector"))
    if projector is None:
        return ["metrics-service: no Deployment named metrics-projector"]
    errors = [f"metrics-projector: {e}" for e in _check_pod(projector["spec"]["template"]["spec"], "metrics-service")]
    for name, wanted in (("metrics-projector", "only"), ("metrics-service", "separate")):
        deployment = by_kind.get(("Deployment", name))
        env = {} if deployment is None else {
            e["name"]: e.get("value") for e in deployment["spec"]["template"]["spec"]["containers"][0].get("env", [])}
        if env.get("SALESFLOW_PROJECTOR") != wanted:
            errors.append(f"{name}: SALESFLOW_PROJECTOR is {env.get('SALESFLOW_PROJECTOR')!r}, not {wanted!r}")
    return errors


def _check_ingress(ingress: dict | None) -> list[str]:
    if ingress is None:
        return ["no Ingress named salesflow-gateway"]
    routed: dict[str, str] = {}
    for rule in ingress["spec"]["rules"]:
        for path in rule["http"]["paths"]:
            routed[path["path"]] = path["backend"]["service"]["name"]
    wanted = {f"/v1/{prefix}": service for service, prefixes in PREFIXES.items() for prefix in prefixes}
    errors = [f"Ingress routes {p} to {routed.get(p)}, not {s}" for p, s in wanted.items() if routed.get(p) != s]
    errors += [f"Ingress routes {p}, which no service owns" for p in routed if p not in wanted]
    return errors


def _check_nginx(conf: str) -> list[str]:
    errors = []
    routed: dict[str, str] = {}
    for alternatives, upstream in re.findall(r'"~\^/v1/\(([^)]*)\)\(/\|\$\)"\s+([a-z-]+):\d+;', conf):
        for prefix in alternatives.split("|"):
            routed[prefix] = upstream
    for service, prefixes in PREFIXES.items():
        for prefix in prefixes:
            if routed.get(prefix) != service:
                errors.append(f"nginx routes /v1/{prefix} to {routed.get(prefix)}, not {service}")
    owned = {p for ps in PREFIXES.values() for p in ps}
    errors += [f"nginx routes /v1/{p}, which no service owns" for p in routed if p not in owned]
    if not re.search(r"client_max_body_size\s+\S+;", conf):
        errors.append("nginx sets no client_max_body_size")
    if "Access-Control-Allow-Origin $cors_origin" not in conf:
        errors.append("nginx answers CORS for no configured origin")
    return errors


def main(argv: list[str]) -> int:
    rendered, nginx_conf = Path(argv[1]), Path(argv[2])
    docs = [d for d in yaml.safe_load_all(rendered.read_text()) if d]
    errors = check(docs, nginx_conf.read_text())
    for error in errors:
        print(f"  {error}", file=sys.stderr)
    print(f"{rendered.name}: {len(docs)} objects, {'OK' if not errors else f'{len(errors)} problem(s)'}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
