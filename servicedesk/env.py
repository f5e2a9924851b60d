"""Read settings from the environment, failing loudly.

Every helper raises ``ImproperlyConfigured`` naming the variable when a value is missing (and
required) or malformed, so a bad deploy fails at start-up with a message an operator can act on
instead of misbehaving later.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

_REQUIRED = object()
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _raw(name: str, default: object) -> str | None:
    value = os.environ.get(name)
    if value is None:
        if default is _REQUIRED:
            raise ImproperlyConfigured(f"Set the environment variable {name}.")
        return None
    return value


def env_str(name: str, default: object = _REQUIRED) -> str:
    value = _raw(name, default)
    return value if value is not None else default  # type: ignore[return-value]


def env_secret(name: str, default: object = _REQUIRED) -> str:
    """A secret from ``NAME`` or from the file named by ``NAME_FILE`` (Docker/K8s secrets)."""
    file_name = os.environ.get(f"{name}_FILE")
    if file_name:
        try:
            return Path(file_name).read_text().strip()
        except OSError as exc:
            raise ImproperlyConfigured(
                f"{name}_FILE names {file_name!r}, which cannot be read: {exc.strerror}."
            ) from None
    return env_str(name, default)


def env_bool(name: str, default: bool | object = _REQUIRED) -> bool:
    value = _raw(name, default)
    if value is None:
        return default  # type: ignore[return-value]
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (1/0, true/false), not {value!r}.")


def env_int(name: str, default: int | object = _REQUIRED) -> int:
    value = _raw(name, default)
    if value is None:
        return default  # type: ignore[return-value]
    try:
        return int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, not {value!r}.") from None


def env_list(name: str, default: list[str] | object = _REQUIRED) -> list[str]:
    value = _raw(name, default)
    if value is None:
        return list(default)  # type: ignore[arg-type]
    return [item.strip() for item in value.split(",") if item.strip()]


def env_networks(name: str, default: list[str] | object = _REQUIRED) -> list[str]:
    """A comma-separated list of IP addresses and networks (CIDR), each checked at start-up."""
    values = env_list(name, default)
    for item in values:
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise ImproperlyConfigured(
                f"{name} must list IP addresses or networks (CIDR), not {item!r}."
            ) from None
    return values
