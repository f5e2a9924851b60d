#!/usr/bin/env bash
# `make test`: everything CI checks, on a fresh machine or a used one.
#  1. installs the missing system services (PostgreSQL, Redis, Dovecot, Chromium) when root;
#  2. installs the Python dependencies into .venv;
#  3. lints (ruff, mypy), checks migrations and the docker-compose file;
#  4. runs the whole pytest suite: the harness starts throwaway PostgreSQL, Redis, Dovecot, an
#     SMTP server, Celery workers and Chromium on free ports on 127.0.0.1, and stops them.
# Extra arguments go to pytest. With CI set, a missing service fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."

lint_only=0
if [ "${1:-}" = "--lint-only" ]; then lint_only=1; shift; fi

start=$(date +%s)
step() { printf '\n== %s (%ss)\n' "$*" "$(( $(date +%s) - start ))"; }

if [ "$lint_only" = 0 ]; then
    step "system services"
    bash scripts/install-system-deps.sh
fi

step "python dependencies"
source scripts/venv.sh
ensure_venv dev

step "ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .

step "mypy"
.venv/bin/mypy

step "migrations are up to date"
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
env -u DATABASE_URL -u REDIS_URL SERVICEDESK_VAR_DIR="$scratch" \
    .venv/bin/python manage.py makemigrations --check --dry-run

step "translations"
.venv/bin/python scripts/compilemessages.py

step "docker-compose.yml"
bash scripts/check-compose.sh .venv/bin/python

[ "$lint_only" = 1 ] && exit 0

step "pytest"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
set +e
.venv/bin/python -m pytest "$@"
status=$?
set -e
step "done (pytest exit $status)"
exit $status
