#!/usr/bin/env bash
# Validates what deploy/ ships: every kustomize tree (base and overlays) builds and passes the Kubernetes
# OpenAPI schemas (kubernetes-validate, strict: unknown fields fail), the compose file parses and is
# consistent (scripts/check_deploy.py), and the Grafana dashboard only charts metrics the services export.
set -euo pipefail
cd "$(dirname "$0")/.."
say() { echo "[validate-deploy] $*" >&2; }
die() { echo "[validate-deploy] error: $*" >&2; exit 1; }

KUBERNETES_VERSION="${ALOFT_KUBERNETES_VERSION:-1.31.0}"
VENV="${ALOFT_VENV:-$HOME/.cache/aloft/venv}"
if [ ! -x "$VENV/bin/kubernetes-validate" ]; then
  command -v python3 >/dev/null || die "python3 is required to validate the manifests"
  say "installing kubernetes-validate and PyYAML into $VENV (once)"
  python3 -m venv "$VENV" || die "cannot create a Python venv at $VENV"
  "$VENV/bin/pip" install -q kubernetes-validate pyyaml || die "pip install kubernetes-validate failed"
fi

if command -v kubectl >/dev/null; then
  kustomize_build() { kubectl kustomize "$1"; }
elif command -v kustomize >/dev/null; then
  kustomize_build() { kustomize build "$1"; }
else
  die "kubectl (or kustomize) is needed to build deploy/k8s; install kubectl"
fi

rendered=$(mktemp -d)
trap 'rm -rf "$rendered"' EXIT
for tree in deploy/k8s/base deploy/k8s/overlays/*; do
  out="$rendered/$(echo "$tree" | tr / _).yaml"
  kustomize_build "$tree" >"$out" || die "kustomize build $tree failed"
  "$VENV/bin/kubernetes-validate" --strict --quiet -k "$KUBERNETES_VERSION" "$out" \
    || die "$tree does not validate against the Kubernetes $KUBERNETES_VERSION schemas"
  say "$tree: $(grep -c '^kind:' "$out") resources valid for Kubernetes $KUBERNETES_VERSION"
done
# Each optional component on the prod base (with task-pods, which the others extend), as an overlay would.
scratch_overlay="deploy/k8s/.component-check"
trap 'rm -rf "$rendered" "$scratch_overlay"' EXIT
for component in deploy/k8s/components/*; do
  rm -rf "$scratch_overlay" && mkdir -p "$scratch_overlay"
  name=$(basename "$component")
  { echo "apiVersion: kustomize.config.k8s.io/v1beta1"; echo "kind: Kustomization"; echo "namespace: aloft"
    echo "resources: [../base]"; echo "components:"; echo "  - ../components/task-pods"
    [ "$name" = task-pods ] || echo "  - ../components/$name"; } >"$scratch_overlay/kustomization.yaml"
  out="$rendered/component_$name.yaml"
  kustomize_build "$scratch_overlay" >"$out" || die "kustomize build with $component failed"
  "$VENV/bin/kubernetes-validate" --strict --quiet -k "$KUBERNETES_VERSION" "$out" \
    || die "$component does not validate against the Kubernetes $KUBERNETES_VERSION schemas"
  say "$component: $(grep -c '^kind:' "$out") resources valid for Kubernetes $KUBERNETES_VERSION"
done
rm -rf "$scratch_overlay"
"$VENV/bin/python" scripts/check_deploy.py || die "deploy/compose or the dashboard is inconsistent"
