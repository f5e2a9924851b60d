#!/usr/bin/env bash
# Install the system services the test suite runs for real: PostgreSQL, Redis, Dovecot (IMAP and
# LMTP) and Chromium, and GNU gettext (makemessages, for the translation test). Only what is
# missing is installed. Needs root and apt; anywhere else it only reports what is missing (the
# test harness then fails, or skips outside CI).
#
# Services are never started here: apt must not start daemons on 0.0.0.0 during install, so a
# policy-rc.d that forbids it is in place for the duration (and removed if we created it).
set -euo pipefail

missing=()
have() { command -v "$1" >/dev/null 2>&1 || [ -x "$1" ]; }
pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }

[ -n "$(pg_bin)" ] && [ -x "$(pg_bin)/initdb" ] || missing+=(postgresql)
have redis-server || missing+=(redis-server)
have /usr/sbin/dovecot || missing+=(dovecot-imapd)
[ -e /usr/lib/dovecot/lmtp ] || missing+=(dovecot-lmtpd)
have /usr/bin/chromium || missing+=(chromium)
# GNU gettext's xgettext: the test that the German catalogue is complete runs makemessages.
have xgettext || missing+=(gettext)

if [ ${#missing[@]} -eq 0 ]; then
    echo "system services: all present (postgresql, redis, dovecot imap+lmtp, chromium, gettext)"
    exit 0
fi

if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "system services missing: ${missing[*]} (install them with your package manager)" >&2
    exit 0
fi

echo "installing: ${missing[*]}"
created_policy=0
if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    created_policy=1
fi
cleanup() { [ "$created_policy" = 1 ] && rm -f /usr/sbin/policy-rc.d; return 0; }
trap cleanup EXIT

export DEBIAN_FRONTEND=noninteractive
apt_opts=(-y -q --no-install-recommends -o DPkg::Lock::Timeout=600)
apt-get update -q -o DPkg::Lock::Timeout=600
apt-get install "${apt_opts[@]}" "${missing[@]}" fonts-dejavu-core openssl ca-certificates
