#!/usr/bin/env bash
# Validate the deployment configuration without a cluster or a container engine (CI runs this).
#   1. kustomize render of the base and of every overlay (kubectl kustomize; kubectl is installed if missing)
#   2. the rendered objects against the Kubernetes OpenAPI schemas, strict (kubernetes-validate, from PyPI,
#      offline: it ships the schemas), for the oldest and newest Kubernetes versions we support
#   3. deploy/check_manifests.py: probes, resources, graceful stop, migration Jobs, Secret references only,
#      Ingress and nginx both route exactly docs/architecture.md's prefixes
#   4. nginx -t on deploy/gateway/nginx.conf (nginx from Debian, installed if missing), then
#      deploy/gateway_smoke.py runs it: every prefix routed, CORS per origin, 413 over 1 MiB, /openapi.json
#   5. docker compose config (the compose plugin if the docker client has it, else Debian's docker-compose)
#   6. docs/openapi.json is current (`salesflow openapi --check`)
# Tools are installed once and reused: apt packages system-wide, the Python tools in $SALESFLOW_DEPLOY_TOOLS.
set -euo pipefail
cd "$(dirname "$0")/.."
KUBE_VERSIONS=(1.30.0 1.34.0)
KUBERNETES_VALIDATE_VERSION=1.37.0
TOOLS="${SALESFLOW_DEPLOY_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/salesflow-deploy-tools}"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
started=$SECONDS
step() { echo "validate: $*"; }

apt_updated=""
apt_install() {  # package...
  local sudo=""; [[ $(id -u) == 0 ]] || sudo="sudo"
  if [[ -z "$apt_updated" ]]; then $sudo apt-get update -qq >/dev/null; apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

command -v kubectl >/dev/null || apt_install kubectl
command -v nginx >/dev/null || [[ -x /usr/sbin/nginx ]] || apt_install nginx-light
if ! docker compose version >/dev/null 2>&1 && ! command -v docker-compose >/dev/null; then
  apt_install docker-compose
fi
if ! "$TOOLS/bin/python" -c "import kubernetes_validate" 2>/dev/null \
   || [[ "$("$TOOLS/bin/pip" show kubernetes-validate 2>/dev/null | sed -n 's/^Version: //p')" != "$KUBERNETES_VALIDATE_VERSION" ]]; then
  step "installing kubernetes-validate $KUBERNETES_VALIDATE_VERSION into $TOOLS"
  python3 -m venv "$TOOLS"
  "$TOOLS/bin/pip" install --quiet --disable-pip-version-check "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" 2>&1 \
    | grep -v "is ignored: it is neither a file nor a directory" || true
  "$TOOLS/bin/python" -c "import kubernetes_validate"
fi

step "$(kubectl version --client 2>/dev/null | grep -i kustomize), kubernetes-validate $KUBERNETES_VALIDATE_VERSION"
for target in deploy/kubernetes/base deploy/kubernetes/overlays/*/; do
  target="${target%/}"
  out="$WORK/$(echo "$target" | tr '/' '_').yaml"
  kubectl kustomize "$target" > "$out"
  step "rendered $target ($(grep -c '^kind:' "$out") objects)"
  for version in "${KUBE_VERSIONS[@]}"; do
    "$TOOLS/bin/kubernetes-validate" --strict --quiet --kubernetes-version "$version" "$out"
  done
  step "$target: valid against the Kubernetes ${KUBE_VERSIONS[*]} schemas (strict)"
  "$TOOLS/bin/python" deploy/check_manifests.py "$out" deploy/gateway/nginx.conf
done

mkdir -p "$WORK/nginx"
cp deploy/gateway/nginx.conf deploy/gateway/cors-origins.map deploy/gateway/proxy.conf "$WORK/nginx/"
PATH="$PATH:/usr/sbin" nginx -q -t -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf"
step "nginx -t: deploy/gateway/nginx.conf is valid"
PATH="$PATH:/usr/sbin" "$TOOLS/bin/python" deploy/gateway_smoke.py "$(PATH="$PATH:/usr/sbin" command -v nginx)"

export SALESFLOW_JWT_SECRET="${SALESFLOW_JWT_SECRET:-validate-only-not-a-real-secret-0123456789}"
if docker compose version >/dev/null 2>&1; then
  docker compose -f docker-compose.yml config -q
  step "docker compose config: docker-compose.yml is valid"
else
  docker-compose -f docker-compose.yml config -q
  step "docker-compose config ($(docker-compose version --short 2>/dev/null)): docker-compose.yml is valid"
fi

# The OpenAPI merge imports the five services: the project's environment must be installed (idempotent).
[[ -x .venv/bin/salesflow ]] || make -s install
.venv/bin/salesflow openapi --check
step "all checks passed in $((SECONDS - started)) s"
