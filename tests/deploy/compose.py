"""Reading docker-compose.yml the way Docker Compose does, for running its services' commands here."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from tests.services import REPO

COMPOSE_FILE = REPO / "docker-compose.yml"
VARIABLE = re.compile(r"\$\$|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")


def load() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def interpolate(value, variables: dict[str, str]):
    """Compose's ${VAR}, ${VAR:-default}, ${VAR:?error} and $$, applied through lists and mappings."""
    if isinstance(value, list):
        return [interpolate(v, variables) for v in value]
    if isinstance(value, dict):
        return {k: interpolate(v, variables) for k, v in value.items()}
    if not isinstance(value, str):
        return value

    def replace(match: re.Match) -> str:
        if match.group(0) == "$$":
            return "$"
        name, op, arg = match.group("name"), match.group("op"), match.group("arg")
        present = variables.get(name)
        if op in (":-", "-"):
            return present if present not in (None, "") or (op == "-" and present is not None) else arg
        if op in (":?", "?") and not present:
            raise KeyError(f"{name}: {arg}")
        return present or ""

    return VARIABLE.sub(replace, value)


def variables_used() -> set[str]:
    return {m.group("name") for m in VARIABLE.finditer(COMPOSE_FILE.read_text()) if m.group("name")}


def secret_variables() -> set[str]:
    """Variables compose refuses to run without (${VAR:?...}): the secrets, which have no default."""
    return {m.group("name") for m in VARIABLE.finditer(COMPOSE_FILE.read_text()) if m.group("op") == ":?"}


def service(name: str, variables: dict[str, str]) -> dict:
    return interpolate(load()["services"][name], variables)


def env_example() -> dict[str, str]:
    entries = {}
    for line in (REPO / ".env.example").read_text().splitlines():
        line = line.lstrip("# ").strip()
        if "=" in line and re.match(r"^[A-Z_]+=", line):
            key, _, value = line.partition("=")
            entries[key] = value
    return entries


def localise(environment: dict[str, str], hosts: dict[str, str], data_dir: Path) -> dict[str, str]:
    """A service's environment for this machine: compose host names -> local addresses, /data -> data_dir."""
    local = {}
    for key, value in environment.items():
        value = str(value)
        for host, address in hosts.items():
            value = address if value == host else value.replace(f"@{host}", f"@{address}")
        local[key] = str(data_dir) if value == "/data" else value
    return local
