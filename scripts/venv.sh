# Sourced by run.sh and test.sh: make .venv exist with the project installed.
# Usage: ensure_venv [extra]   (extra: "dev" for the test tools)

ensure_venv() {
    local extra="${1:-}"
    local python="${PYTHON:-python3}"
    if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
        echo "Python 3.11 or newer is needed (tried '$python'; set PYTHON=...)." >&2
        exit 1
    fi
    if [ ! -x .venv/bin/python ]; then
        echo "creating .venv"
        "$python" -m venv .venv
    fi
    local spec="."
    [ -n "$extra" ] && spec=".[$extra]"
    local stamp=".venv/.installed-${extra:-runtime}"
    local digest
    digest=$(sha256sum pyproject.toml | cut -c1-16)
    if [ "$(cat "$stamp" 2>/dev/null)" != "$digest" ]; then
        echo "installing Python dependencies ($spec) into .venv"
        .venv/bin/python -m pip install --quiet --upgrade pip
        .venv/bin/python -m pip install --quiet -e "$spec"
        echo "$digest" > "$stamp"
    fi
}
