#!/usr/bin/env bash
# Builds kube-apiserver, kube-controller-manager and etcd from their sources
# through the Go module proxy, once, into a cache directory:
#
#   e2e/k8s/build.sh            -> $FLOE_K8S_BIN_ROOT/v<version>/{kube-apiserver,kube-controller-manager,etcd,kubectl}
#                                  $FLOE_K8S_BIN_ROOT/helm-v<helm version>/helm
#
# helm (helm.sh/helm/v3, HELM_VERSION default 3.22.0) is a plain module with
# no replace directives, so `go install module@version` builds it alone.
#
# k8s.io/kubernetes replaces its staging modules (k8s.io/api, client-go, ...)
# with directories of its own repository, which a module outside it cannot
# see; so the build runs in a small wrapper module that requires
# k8s.io/kubernetes and pins every staging module at the matching v0.x
# release. etcd comes from the same module graph (k8s.io/kubernetes requires
# go.etcd.io/etcd/server/v3), so its version is the one that Kubernetes
# release is tested with.
#
# Environment: K8S_VERSION (default 1.34.4), FLOE_K8S_BIN_ROOT (default
# ~/.cache/floe/k8s-bin), GOCACHE/GOMODCACHE as usual (point them at an empty
# directory to measure a cold build). Prints the binary directory on stdout.
set -euo pipefail

K8S_VERSION="${K8S_VERSION:-1.34.4}"
ROOT="${FLOE_K8S_BIN_ROOT:-$HOME/.cache/floe/k8s-bin}"
BIN="$ROOT/v$K8S_VERSION"
STAGING_VERSION="v0.${K8S_VERSION#*.}"
MINOR="${K8S_VERSION#*.}"; MINOR="${MINOR%%.*}"

log() { echo "[build.sh $(date -u +%H:%M:%S)] $*" >&2; }

HELM_VERSION="${HELM_VERSION:-3.22.0}"
HELM_BIN="$ROOT/helm-v$HELM_VERSION"
if [[ ! -x "$HELM_BIN/helm" ]]; then
    log "building helm v$HELM_VERSION"
    mkdir -p "$HELM_BIN"
    CGO_ENABLED=0 GOBIN="$HELM_BIN" GOFLAGS= go install -trimpath \
        -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=v$HELM_VERSION" \
        "helm.sh/helm/v3/cmd/helm@v$HELM_VERSION" >&2
fi

pkg=k8s.io/component-base/version
ldflags="-s -w -X $pkg.gitVersion=v$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$MINOR -X $pkg.gitTreeState=clean"
ldflags="$ldflags -X k8s.io/client-go/pkg/version.gitVersion=v$K8S_VERSION"

# kubectl from the same module graph (about 110 packages beyond the two servers'), so a machine
# without a kubectl package (Debian has none) runs the tier too; the tests put $BIN on PATH.
build_kubectl() {
    log "building kubectl"
    # -mod=mod: a wrapper made before kubectl was a tool adds its go.sum lines (versions from the same graph).
    (cd "$BIN/wrapper" && CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -ldflags "$ldflags" -o "$BIN/" \
        k8s.io/kubernetes/cmd/kubectl >&2)
}

if [[ -x "$BIN/kube-apiserver" && -x "$BIN/kube-controller-manager" && -x "$BIN/etcd" ]]; then
    [[ -x "$BIN/kubectl" || ! -f "$BIN/wrapper/go.mod" ]] || build_kubectl
    echo "$BIN"
    exit 0
fi

mkdir -p "$BIN"
SRC="$BIN/wrapper"
rm -rf "$SRC"
mkdir -p "$SRC"
cd "$SRC"

log "fetching k8s.io/kubernetes v$K8S_VERSION's go.mod"
mod_json="$(GOFLAGS=-mod=mod go mod download -json "k8s.io/kubernetes@v$K8S_VERSION")"
kube_mod="$(python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])' <<<"$mod_json")"

{
    echo "module floe.dev/e2e/k8s-bin"
    echo
    echo "go 1.24.0"
    echo
    echo "godebug default=go1.24"
    echo
    echo "require k8s.io/kubernetes v$K8S_VERSION"
    echo
    echo "replace ("
    # Every "k8s.io/x => ./staging/src/k8s.io/x" becomes "k8s.io/x => k8s.io/x v0.N.P".
    sed -n 's#^[[:space:]]*\(k8s\.io/[^ ]*\) => \./staging/.*#\t\1 => \1 '"$STAGING_VERSION"'#p' "$kube_mod"
    echo ")"
    echo
    echo "tool ("
    echo "	k8s.io/kubernetes/cmd/kube-apiserver"
    echo "	k8s.io/kubernetes/cmd/kube-controller-manager"
    echo "	go.etcd.io/etcd/server/v3"
    echo "	k8s.io/kubernetes/cmd/kubectl"
    echo ")"
} > go.mod

log "resolving the module graph"
go mod tidy >&2

log "building kube-apiserver and kube-controller-manager"
CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$BIN/" \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager >&2
log "building etcd"
CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$BIN/etcd" go.etcd.io/etcd/server/v3 >&2
build_kubectl
go list -m go.etcd.io/etcd/server/v3 > "$BIN/etcd.version"
log "done"
echo "$BIN"
