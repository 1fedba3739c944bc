"""Checking the workflow configuration against its JSON schema, with one readable line per problem.

Snakemake's own ``validate`` reports the first problem followed by the whole schema; a user who typed
``max_iter`` wants to read "train: Additional properties are not allowed ('max_iter' was unexpected)".
Schema defaults are filled in, as Snakemake's ``validate(set_default=True)`` does.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import jsonschema
import yaml


class ConfigError(ValueError):
    """The workflow configuration does not match its schema."""


def _with_defaults(validator_class):
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, subschema in properties.items():
                if "default" in subschema:
                    instance.setdefault(name, subschema["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


def check_config(config: dict, schema_path: str | Path, sources: Iterable[str | Path] = ()) -> None:
    """Raise ``ConfigError`` naming the config file(s) and each offending key, or return quietly."""
    schema = yaml.safe_load(Path(schema_path).read_text())
    validator = _with_defaults(jsonschema.Draft202012Validator)(schema)
    problems = []
    for error in sorted(validator.iter_errors(config), key=lambda e: list(map(str, e.absolute_path))):
        where = ".".join(str(p) for p in error.absolute_path) or "(top level)"
        problems.append(f"{where}: {error.message}")
    if not problems:
        problems = _cross_references(config)
    if problems:
        origin = ", ".join(str(s) for s in sources) or "the configuration"
        raise ConfigError(f"{origin} does not match {schema_path}: " + "; ".join(problems))


def _cross_references(config: dict) -> list[str]:
    """What a JSON schema cannot say: the methods a decoupled method or a published checkpoint names exist."""
    methods = config.get("methods") or {}
    problems = []
    for name, spec in methods.items():
        start = (spec.get("init") or {}).get("from")
        if start is not None and start not in methods:
            problems.append(f"methods.{name}.init.from: '{start}' is not one of the methods")
    for name in config.get("published") or {}:
        if name not in methods:
            problems.append(f"published.{name}: '{name}' is not one of the methods (whose config builds it)")
    return problems
