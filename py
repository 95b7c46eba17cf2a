#!/usr/bin/env bash
# ./py: the Python of the python-default resolve (exported by Pants) with src/ on sys.path.
#   ./py -m alembic upgrade head | ./py -c 'import ai.backend.common' | ./py script.py
# (Re)exports the venv on first use and whenever python.lock is newer than the last export.
# Several ./py started at once (a runtime and its sidecars) prepare it once: the first takes a
# file lock and exports, the others wait for that lock and then find the environment ready.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
EXPORT="$ROOT/dist/export/python/virtualenvs/python-default"
STAMP="$EXPORT/.exported"   # not bin/python: that is a symlink to the (old) base interpreter

needs_export() { [[ ! -f "$STAMP" || "$ROOT/python.lock" -nt "$STAMP" ]]; }

if needs_export; then
  mkdir -p "$ROOT/dist"
  exec 9>"$ROOT/dist/.py-export.lock"
  if ! flock --nonblock 9; then
    echo "[./py] waiting for another ./py that is preparing the Python environment" >&2
    flock 9
  fi
  if needs_export; then   # the one we waited for may have failed: then this one tries
    echo "[./py] preparing the Python environment (./pants export --resolve=python-default, ~1 min the first time)" >&2
    log="$(mktemp)"
    if ! (cd "$ROOT" && ./pants --no-pantsd export --resolve=python-default) >"$log" 2>&1; then
      cat "$log" >&2; rm -f "$log"; exit 1
    fi
    rm -f "$log"
    # bytecode for the dependencies, once: every process (a replica's sidecar above all) then
    # imports them without compiling, also where PYTHONDONTWRITEBYTECODE is set (~0.8 s each)
    for site in "$EXPORT"/*/lib/python*/site-packages; do
      if [[ -d "$site" ]]; then
        "$site/../../../bin/python" -m compileall -q -j 0 "$site" >/dev/null 2>&1 || true
      fi
    done
    touch "$STAMP"
  fi
  exec 9>&-
fi
PY="$(ls -d "$EXPORT"/*/bin/python | sort -V | tail -n1)"   # dir name = full Python version
PYTHONPATH="$ROOT/src${PYTHONPATH:+:$PYTHONPATH}" exec "$PY" "$@"
