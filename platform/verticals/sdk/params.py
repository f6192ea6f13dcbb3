"""Hyperparameter schemas: defaults and validation messages."""

from __future__ import annotations

import copy

from verticals.jobs.runners import schema_problems as problems  # noqa: F401  (one validator for jobs and tasks)


def with_defaults(schema: dict, params: dict) -> dict:
    """`params` with each missing top-level property set to the schema's default."""
    filled = copy.deepcopy(params)
    for name, spec in (schema.get("properties") or {}).items():
        if name not in filled and isinstance(spec, dict) and "default" in spec:
            filled[name] = copy.deepcopy(spec["default"])
    return filled
