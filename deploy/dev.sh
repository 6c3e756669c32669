#!/usr/bin/env bash
# The newcomer's entry point, and what CI runs:
#   bash deploy/dev.sh demo [ARGS]   create .venv if needed, run `kpiwatch demo` (no services)
#   bash deploy/dev.sh test [ARGS]   .venv, lint, type check, Kafka + Redis, the whole test suite
#   bash deploy/dev.sh venv          only create or refresh .venv
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${KPIWATCH_VENV:-$repo/.venv}

say() { printf '%s\n' "dev: $*" >&2; }

find_python() {
  local candidate
  for candidate in python3.13 python3.12 python3.11 python3; do
    if command -v "$candidate" >/dev/null 2>&1 &&
      "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      command -v "$candidate"
      return 0
    fi
  done
  say "kpiwatch needs Python 3.11 or newer on PATH"
  return 1
}

# Reinstall only when pyproject.toml changed: a second run starts in a second.
ensure_venv() {
  local stamp="$venv/.kpiwatch-installed" want
  want=$(sha256sum "$repo/pyproject.toml" | cut -d' ' -f1)
  if [[ -x "$venv/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    return 0
  fi
  if [[ ! -x "$venv/bin/python" ]]; then
    say "creating $venv"
    "$(find_python)" -m venv "$venv"
  fi
  say "installing kpiwatch and its dev tools into $venv (first run takes a minute)"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -e "$repo[dev]"
  echo "$want" >"$stamp"
}

run_tests() {
  cd "$repo"
  say "ruff"
  "$venv/bin/ruff" check streams rules sinks connectors tests bench
  say "mypy (strict)"
  "$venv/bin/mypy"
  say "installing local services (Kafka jars, redis-server, prometheus, alertmanager) if missing"
  bash "$repo/deploy/services.sh" install
  # promtool and amtool (Debian's prometheus packages) for the deploy/ checks in tests/unit/deploy.
  bash "$repo/deploy/services.sh" install prometheus
  bash "$repo/deploy/services.sh" install alertmanager
  say "pytest (the tests start Kafka and Redis themselves and stop what they started)"
  "$venv/bin/python" -m pytest "$@"
}

main() {
  local command=${1:-}
  shift || true
  case "$command" in
    demo) ensure_venv; exec "$venv/bin/kpiwatch" demo "$@" ;;
    test) ensure_venv; run_tests "$@" ;;
    venv) ensure_venv ;;
    *) echo "usage: bash deploy/dev.sh {demo|test|venv} [ARGS]" >&2; exit 64 ;;
  esac
}

main "$@"
