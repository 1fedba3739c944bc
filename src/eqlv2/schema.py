"""Checking the workflow configuration against its JSON schema, with one readable line per problem.

Snakemake's own ``validate`` reports the first problem followed by the whole schema; a user who typed
``max_iter`` wants to read "train: Additional properties are not allowed ('max_iter' was unexpected)".
Schema defaults are filled in, as Snakemake's ``validate(set_default=True)`` does.

Values given on the command line (``--config``) are typed by the schema first: Snakemake reads a plain
``key=value`` as a number or a string, but the items of a list or a mapping (``seeds=[0,1,2]``,
``resources={train: {gpus: 2}}``) through YAML's base loader, as strings only.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

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


_INTEGER = re.compile(r"[-+]?[0-9]+")
_NUMBER = re.compile(r"[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?")
_BOOLEANS = {"true": True, "True": True, "TRUE": True, "false": False, "False": False, "FALSE": False}
_NULLS = ("null", "Null", "NULL", "~")


def _resolve(schema: Mapping[str, Any], root: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    """A subschema and those that apply to the same value: its local ``$ref``, ``allOf``, ``anyOf``,
    ``oneOf`` and the ``then``/``else`` of its conditions."""
    if not isinstance(schema, Mapping):
        return
    yield schema
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#"):
        target: Any = root
        for part in filter(None, ref[1:].split("/")):
            target = target[part.replace("~1", "/").replace("~0", "~")]
        yield from _resolve(target, root)
    for keyword in ("allOf", "anyOf", "oneOf"):
        for subschema in schema.get(keyword, ()):
            yield from _resolve(subschema, root)
    for keyword in ("then", "else"):
        if keyword in schema:
            yield from _resolve(schema[keyword], root)


def _types(schemas: list[Mapping[str, Any]]) -> set[str]:
    declared: set[str] = set()
    for schema in schemas:
        kind = schema.get("type")
        declared.update([kind] if isinstance(kind, str) else kind or ())
    return declared


def _scalar(text: str, types: set[str]) -> Any:
    """A string as the type the schema asks for, where it is written as one; else the string itself
    (a key that takes strings keeps its text, "2" included)."""
    if "string" in types:
        return text
    if "integer" in types and _INTEGER.fullmatch(text):
        return int(text)
    if "number" in types and _NUMBER.fullmatch(text):
        return int(text) if _INTEGER.fullmatch(text) else float(text)
    if "boolean" in types and text in _BOOLEANS:
        return _BOOLEANS[text]
    if "null" in types and text in _NULLS:
        return None
    return text


def _coerce(value: Any, schemas: list[Mapping[str, Any]], root: Mapping[str, Any]) -> Any:
    applicable = [s for schema in schemas for s in _resolve(schema, root)]
    if isinstance(value, str):
        return _scalar(value, _types(applicable))
    if isinstance(value, Mapping):
        coerced = {}
        for key, item in value.items():
            children = []
            for schema in applicable:
                named = [schema["properties"][key]] if key in schema.get("properties", {}) else []
                named += [sub for pattern, sub in schema.get("patternProperties", {}).items()
                          if re.search(pattern, str(key))]  # fmt: skip
                if not named and isinstance(schema.get("additionalProperties"), Mapping):
                    named = [schema["additionalProperties"]]
                children += named
            coerced[key] = _coerce(item, children, root)
        return coerced
    if isinstance(value, list):
        coerced_items = []
        for index, item in enumerate(value):
            children = []
            for schema in applicable:
                prefix = schema.get("prefixItems", [])
                if index < len(prefix):
                    children.append(prefix[index])
                elif isinstance(schema.get("items"), Mapping):
                    children.append(schema["items"])
            coerced_items.append(_coerce(item, children, root))
        return coerced_items
    return value


def coerce_overrides(overrides: Mapping[str, Any], schema: Mapping[str, Any] | str | Path) -> dict[str, Any]:
    """Command-line values (``--config``) typed by the schema: a string where the schema asks for an
    integer or a number and that is written as one becomes that number ("2" -> 2, "0.5" -> 0.5), and
    likewise true/false for a boolean and null for null.  Everything else is returned as given, for
    ``check_config`` to judge: "two" for an integer still fails, naming its key, and a key that takes
    strings keeps "2".  ``schema`` is the schema or the path of its YAML file.
    """
    if not isinstance(schema, Mapping):
        schema = yaml.safe_load(Path(schema).read_text())
    return _coerce(dict(overrides), [schema], schema)


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
    for job in ("predict", "evaluate"):
        if (config.get("resources", {}).get(job) or {}).get("nodes", 1) > 1:
            problems.append(f"resources.{job}.nodes: only a training spans several nodes")
    for name in config.get("published") or {}:
        if name not in methods:
            problems.append(f"published.{name}: '{name}' is not one of the methods (whose config builds it)")
    return problems
