"""The JSON Schema of report.json (``report.schema.json`` in this package) and validation against it.

:func:`validate` checks a document with the ``jsonschema`` package (Draft 2020-12).
"""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

__all__ = ["SCHEMA_PATH", "load_schema", "validate", "SchemaError"]

#: Path of the schema file.
SCHEMA_PATH = Path(__file__).with_name("report.schema.json")


class SchemaError(ValueError):
    """A document does not match the report schema; the message gives the JSON path and the rule."""


@lru_cache(maxsize=1)
def load_schema() -> dict:
    """The report JSON Schema as a dict."""
    return json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))


def validate(doc: Any) -> None:
    """Check ``doc`` (a parsed report.json) against the schema (Draft 2020-12, ``jsonschema`` package).

    Raises:
        SchemaError: the document does not match; the message gives the JSON path of the first error, the
            rule it breaks and the number of errors.
    """
    import jsonschema

    validator = jsonschema.Draft202012Validator(load_schema())
    errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
    if errors:
        e = errors[0]
        path = "$" + "".join(f"[{p!r}]" if isinstance(p, str) else f"[{p}]" for p in e.absolute_path)
        raise SchemaError(f"{path}: {e.message} ({len(errors)} error(s))")
