"""``METHOD=PATH`` command-line items, shared by the verbs that take one file per method (or per seed)."""

from __future__ import annotations


def _split(item: str, option: str) -> tuple[str, str]:
    key, sep, value = item.partition("=")
    if not sep or not key or not value:
        raise ValueError(f"{option}: expected METHOD=PATH, got {item!r}")
    return key, value


def parse_named(items: list[str], option: str) -> dict[str, str]:
    """``METHOD=PATH`` items as a dict, in order, each method once; anything else is an error naming the
    option."""
    named: dict[str, str] = {}
    for item in items:
        key, value = _split(item, option)
        if key in named:
            raise ValueError(f"{option}: method {key!r} given twice")
        named[key] = value
    return named


def parse_seeds(items: list[str], option: str) -> dict[str, list[str]]:
    """``METHOD=PATH`` items where a method given several times names one file per seed (the workflow's
    ``seeds``): method -> its files, methods in order of first appearance."""
    grouped: dict[str, list[str]] = {}
    for item in items:
        key, value = _split(item, option)
        if value in grouped.get(key, []):
            raise ValueError(f"{option}: {key}={value} given twice")
        grouped.setdefault(key, []).append(value)
    return grouped
