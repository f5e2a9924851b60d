# syntax=docker/dockerfile:1
#
# Service Desk production image: gunicorn serving Django (static files by whitenoise).
# The same image runs the Celery worker and beat; docker-compose.yml shows the whole stack.
#
#   docker build -t servicedesk .
#   docker run --rm -p 127.0.0.1:8000:8000 -e SECRET_KEY=... -e SITE_URL=... \
#       -e DATABASE_URL=postgres://... -e REDIS_URL=redis://... servicedesk
#
# Nothing secret is baked in: configuration is read from the environment at start
# (see servicedesk/settings.py).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# An unprivileged user with a fixed uid, so volume ownership is predictable.
RUN groupadd --system --gid 10001 servicedesk \
    && useradd --system --uid 10001 --gid servicedesk --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin servicedesk

WORKDIR /app

# Dependencies first, in their own layer: they change less often than the code. They are the
# exact pins from pyproject.toml's [project].dependencies (all ship wheels: no compiler needed).
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# The project itself. The app runs from /app (PYTHONPATH), not from site-packages: settings find
# templates/ and static/ beside the code (BASE_DIR), and they are not part of the package.
COPY . .
RUN pip install --no-deps . && rm -rf build *.egg-info

ENV PYTHONPATH=/app \
    SERVICEDESK_ENV=production \
    SERVICEDESK_VAR_DIR=/data/var \
    MEDIA_ROOT=/data/media \
    STATIC_ROOT=/app/staticfiles \
    WEB_CONCURRENCY=2

# The translation catalogues (locale/*/LC_MESSAGES/django.po) compiled to the .mo files Django
# reads; a standard-library script, so the image needs no GNU gettext.
RUN python scripts/compilemessages.py --force

# Static files are collected into the image. Production mode is needed so that whitenoise's
# manifest storage writes the hashed names and staticfiles.json it serves at run time; its
# required settings get throwaway values that exist only for this command (not ENV), and
# SERVICEDESK_VAR_DIR points at a scratch dir that is removed, so no key or database file
# ends up in a layer.
RUN SECRET_KEY=collectstatic-build-only-not-a-secret \
    SITE_URL=http://build.invalid \
    SERVICEDESK_VAR_DIR=/tmp/build-var \
    python manage.py collectstatic --noinput \
    && rm -rf /tmp/build-var

# Writable state lives under /data: var (Celery beat's schedule file, SQLite if no DATABASE_URL)
# and media (uploads). Mount volumes there; everything else stays read-only for the app user.
RUN mkdir -p /data/var /data/media && chown -R servicedesk:servicedesk /data

USER servicedesk
EXPOSE 8000

# The health endpoint answers 200 when the database does. The request carries SITE_URL's host
# (so ALLOWED_HOSTS accepts it) and scheme (so SECURE_SSL_REDIRECT does not redirect it).
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, sys, urllib.parse as p, urllib.request as r; s = p.urlsplit(os.environ.get('SITE_URL', 'http://localhost')); q = r.Request('http://127.0.0.1:8000/-/health', headers={'Host': s.netloc, 'X-Forwarded-Proto': s.scheme}); sys.exit(0 if r.urlopen(q, timeout=4).status == 200 else 1)"]

# Workers from WEB_CONCURRENCY (gunicorn reads it); more options via GUNICORN_CMD_ARGS.
CMD ["gunicorn", "servicedesk.wsgi", \
     "--bind", "0.0.0.0:8000", \
     "--threads", "4", \
     "--timeout", "60", \
     "--graceful-timeout", "30", \
     "--max-requests", "1000", \
     "--max-requests-jitter", "100", \
     "--worker-tmp-dir", "/dev/shm", \
     "--no-control-socket", \
     "--access-logfile", "-", \
     "--error-logfile", "-"]
