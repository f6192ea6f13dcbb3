"""Hyperparameter schemas: defaults and validation messages."""

from __future__ import annotations

import copy

import jsonschema


def problems(schema: dict, value) -> list[str]:
    """Messages naming each place where `value` breaks the JSON `schema` (empty when it is valid).

    The one JSON-schema validator of the platform: task hyperparameters and job kinds' params.
    """
    validator = jsonschema.Draft202012Validator(schema)
    found = []
    for error in sorted(validator.iter_errors(value), key=lambda e: list(e.absolute_path)):
        where = ".".join(str(p) for p in error.absolute_path)
        found.append(f"{where}: {error.message}" if where else error.message)
    return found


def with_defaults(schema: dict, params: dict) -> dict:
    """`params` with each missing top-level property set to the schema's default."""
    filled = copy.deepcopy(params)
    for name, spec in (schema.get("properties") or {}).items():
        if name not in filled and isinstance(spec, dict) and "default" in spec:
            filled[name] = copy.deepcopy(spec["default"])
    return filled
