#!/usr/bin/env bash
# `make run`: set up and run the whole product in the foreground — web on 127.0.0.1:8000, the
# Celery worker and beat. SQLite and a filesystem broker under var/ unless DATABASE_URL /
# REDIS_URL say otherwise. One Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh
ensure_venv

export DJANGO_SETTINGS_MODULE=servicedesk.settings
# The translation catalogues (locale/): standard library only, no GNU gettext needed.
.venv/bin/python scripts/compilemessages.py
.venv/bin/python manage.py migrate --noinput
.venv/bin/python manage.py demo

cat <<MSG

Service Desk is starting:
  web      http://127.0.0.1:8000/  (admin: create one with .venv/bin/python manage.py createsuperuser)
  mail     outbound email is written to var/mail/*.log (whole messages) unless EMAIL_HOST is set
  stop     Ctrl-C

MSG
exec .venv/bin/honcho --procfile Procfile --app-root . start
