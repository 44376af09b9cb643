"""Typed readers for environment variables.

Settings are the only caller. Every reader fails loudly with the variable's name when a value
cannot be parsed, and every reader accepts ``NAME_FILE`` (a path whose contents are the value),
the convention Docker and Kubernetes secrets use.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path


class ImproperEnvironment(Exception):
    """An environment variable holds a value the settings cannot use."""

    def __init__(self, name: str, value: str, expected: str) -> None:
        super().__init__(f"Environment variable {name}={value!r} is invalid: expected {expected}.")
        self.name = name


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def raw(name: str, environ: Mapping[str, str] | None = None) -> str | None:
    """The variable's value, from ``NAME`` or the file named by ``NAME_FILE``, or None."""
    env = os.environ if environ is None else environ
    if name in env:
        return env[name]
    file_name = env.get(f"{name}_FILE")
    if file_name:
        try:
            return Path(file_name).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ImproperEnvironment(f"{name}_FILE", file_name, f"a readable file ({exc.strerror})") from exc
    return None


def env_str(name: str, default: str, environ: Mapping[str, str] | None = None) -> str:
    value = raw(name, environ)
    return default if value is None else value


def env_bool(name: str, default: bool, environ: Mapping[str, str] | None = None) -> bool:
    value = raw(name, environ)
    if value is None:
        return default
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ImproperEnvironment(name, value, "one of 1/0, true/false, yes/no, on/off")


def env_int(
    name: str,
    default: int,
    environ: Mapping[str, str] | None = None,
    *,
    minimum: int | None = None,
    maximum: int | None = None,
) -> int:
    value = raw(name, environ)
    if value is None:
        return default
    try:
        number = int(value.strip().replace("_", ""))
    except ValueError:
        raise ImproperEnvironment(name, value, "an integer") from None
    _check_range(name, value, number, minimum, maximum)
    return number


def env_float(
    name: str,
    default: float,
    environ: Mapping[str, str] | None = None,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
) -> float:
    value = raw(name, environ)
    if value is None:
        return default
    try:
        number = float(value.strip())
    except ValueError:
        raise ImproperEnvironment(name, value, "a number") from None
    _check_range(name, value, number, minimum, maximum)
    return number


def env_list(name: str, default: list[str], environ: Mapping[str, str] | None = None) -> list[str]:
    """A comma-separated list; blanks are dropped."""
    value = raw(name, environ)
    if value is None:
        return list(default)
    return [item.strip() for item in value.split(",") if item.strip()]


def env_choice(name: str, default: str, choices: tuple[str, ...], environ: Mapping[str, str] | None = None) -> str:
    value = env_str(name, default, environ).strip().lower()
    if value not in choices:
        raise ImproperEnvironment(name, value, "one of " + ", ".join(choices))
    return value


def env_url(name: str, default: str, schemes: tuple[str, ...], environ: Mapping[str, str] | None = None) -> str:
    """A URL whose scheme is one of ``schemes``; an empty default means "not set"."""
    value = env_str(name, default, environ).strip()
    if (value and value.split("://", 1)[0].lower() not in schemes) or (value and "://" not in value):
        raise ImproperEnvironment(name, value, "a URL starting with " + " or ".join(f"{s}://" for s in schemes))
    return value


def _check_range(name: str, value: str, number: float, minimum: float | None, maximum: float | None) -> None:
    if minimum is not None and number < minimum:
        raise ImproperEnvironment(name, value, f"a value >= {minimum}")
    if maximum is not None and number > maximum:
        raise ImproperEnvironment(name, value, f"a value <= {maximum}")
