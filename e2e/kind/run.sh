#!/usr/bin/env bash
# End-to-end on kind: a cluster, the image, MinIO, the operator chart, the
# example StreamCluster, and a kcat Job that produces and consumes a message.
#
# Needs: docker, kind, kubectl, helm (v3.8+). Run from anywhere:
#   e2e/kind/run.sh            # create, test, delete the kind cluster
#   KEEP=1 e2e/kind/run.sh     # leave the cluster running to look around
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
CLUSTER="${CLUSTER:-floe-e2e}"
IMAGE="${IMAGE:-floe:e2e}"
TIMEOUT="${TIMEOUT:-300s}"

log() { printf '\n==> %s\n' "$*"; }
cleanup() {
  status=$?
  if [ "$status" -ne 0 ]; then
    log "failed; state for debugging"
    kubectl get streamclusters,deployments,pods -A || true
    kubectl describe streamcluster demo || true
    kubectl logs -n floe-system deploy/floe-operator --tail=100 || true
    kubectl logs -l app.kubernetes.io/instance=demo --tail=50 --prefix || true
    kubectl logs job/floe-e2e-kcat --tail=50 || true
  fi
  if [ -z "${KEEP:-}" ]; then kind delete cluster --name "$CLUSTER" >/dev/null 2>&1 || true; fi
  exit "$status"
}
trap cleanup EXIT

for tool in docker kind kubectl helm; do
  command -v "$tool" >/dev/null || { echo "missing tool: $tool" >&2; exit 2; }
done

log "kind cluster $CLUSTER"
kind get clusters | grep -qx "$CLUSTER" || kind create cluster --name "$CLUSTER" --wait 120s
kubectl config use-context "kind-$CLUSTER"

log "build and load $IMAGE"
docker build -t "$IMAGE" "$ROOT"
kind load docker-image "$IMAGE" --name "$CLUSTER"

log "MinIO and the bucket"
kubectl apply -f "$ROOT/examples/minio.yaml"
kubectl -n minio rollout status deploy/minio --timeout="$TIMEOUT"
kubectl -n minio wait job/create-bucket --for=condition=complete --timeout="$TIMEOUT"

log "operator chart"
helm upgrade --install floe-operator "$ROOT/charts/floe-operator" \
  --namespace floe-system --create-namespace \
  --set image.repository="${IMAGE%:*}" --set image.tag="${IMAGE##*:}" \
  --set image.pullPolicy=Never --set logFormat=console --wait --timeout "$TIMEOUT"

log "StreamCluster demo"
kubectl apply -f "$ROOT/examples/streamcluster.yaml"
kubectl wait streamcluster/demo --for=jsonpath='{.status.phase}'=Running --timeout="$TIMEOUT"
kubectl get streamcluster demo

log "produce and consume with kcat"
kubectl delete job floe-e2e-kcat --ignore-not-found
kubectl apply -f "$ROOT/e2e/kind/kcat-job.yaml"
kubectl wait job/floe-e2e-kcat --for=condition=complete --timeout="$TIMEOUT"
kubectl logs job/floe-e2e-kcat

log "scale with kubectl scale (scale subresource)"
kubectl scale streamcluster/demo --replicas=4
kubectl wait streamcluster/demo --for=jsonpath='{.status.readyReplicas}'=4 --timeout="$TIMEOUT"

log "delete: children go, the bucket stays"
kubectl delete streamcluster demo --wait
kubectl wait --for=delete deploy/demo-broker --timeout=120s 2>/dev/null || true
test -z "$(kubectl get deploy,svc,cm,pdb -l floe.dev/cluster=demo -o name)"

log "PASS"
