#!/usr/bin/env python3
"""Derive the compact tables Huimin reads from the official FHIR R4B core package.

Usage:  npm pack hl7.fhir.r4b.core && tar xzf hl7.fhir.r4b.core-4.3.0.tgz
        scripts/extract-profiles.py package/ fhir-profiles/

Writes fhir-profiles/r4b-search-parameters.json: every SearchParameter of the package (code,
base types, type, FHIRPath expression, reference targets, composite components), which the
search engine indexes and queries.

Writes fhir-profiles/r4b-compartments.json: the Patient, Encounter, Practitioner, RelatedPerson
and Device compartments (for each resource type, the parameters that place it in one).

Writes fhir-profiles/r4b-elements.json: for every base resource, complex and primitive type
(specialisations only, no constraint profiles) the snapshot elements in definition order with
their cardinality, types, content references and XML representation. The XML <-> JSON
converter and the validator are driven by this table.
"""
import glob
import json
import os
import sys

SYSTEM_TYPES = {
    "http://hl7.org/fhirpath/System.String": "string",
    "http://hl7.org/fhirpath/System.Boolean": "boolean",
    "http://hl7.org/fhirpath/System.Integer": "integer",
    "http://hl7.org/fhirpath/System.Decimal": "decimal",
    "http://hl7.org/fhirpath/System.Date": "date",
    "http://hl7.org/fhirpath/System.DateTime": "dateTime",
    "http://hl7.org/fhirpath/System.Time": "time",
}


def type_code(t):
    code = t.get("code", "")
    if code in SYSTEM_TYPES:
        for ext in t.get("extension", []):
            if ext.get("url", "").endswith("structuredefinition-fhir-type"):
                return ext.get("valueUrl") or ext.get("valueUri") or SYSTEM_TYPES[code]
        return SYSTEM_TYPES[code]
    return code


def main(src, out):
    types = {}
    for f in sorted(glob.glob(os.path.join(src, "StructureDefinition-*.json"))):
        sd = json.load(open(f, encoding="utf-8"))
        if sd.get("kind") not in ("resource", "complex-type", "primitive-type"):
            continue
        if sd.get("derivation") == "constraint":
            continue
        name = sd["type"]
        elements = []
        for e in sd["snapshot"]["element"][1:]:
            entry = {"p": e["path"], "m": 0 if e.get("max") == "1" or e.get("max") == "0" else 1}
            ts = [type_code(t) for t in e.get("type", [])]
            if ts:
                entry["t"] = ts
            if e.get("contentReference"):
                entry["r"] = e["contentReference"].split("#", 1)[1]
            rep = e.get("representation")
            if rep:
                entry["x"] = rep[0]
            if e.get("max") == "0":
                entry["z"] = 1
            if e.get("isSummary"):
                entry["s"] = 1
            if e.get("min", 0) > 0:
                entry["n"] = 1
            elements.append(entry)
        types[name] = {
            "kind": sd["kind"],
            "abstract": bool(sd.get("abstract")),
            "base": (sd.get("baseDefinition") or "").rsplit("/", 1)[-1] or None,
            "elements": elements,
        }
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "r4b-elements.json"), "w", encoding="utf-8") as fh:
        json.dump({"fhirVersion": "4.3.0", "types": types}, fh, separators=(",", ":"), sort_keys=True)
    print(f"{len(types)} types written")
    params = []
    for f in sorted(glob.glob(os.path.join(src, "SearchParameter-*.json"))):
        sp = json.load(open(f, encoding="utf-8"))
        if not sp.get("base") or sp.get("resourceType") != "SearchParameter":
            continue
        entry = {
            "url": sp["url"],
            "code": sp["code"],
            "base": sp["base"],
            "type": sp["type"],
        }
        if sp.get("expression"):
            entry["expr"] = sp["expression"]
        if sp.get("target"):
            entry["target"] = sp["target"]
        if sp.get("component"):
            entry["component"] = [
                {"definition": c["definition"], "expr": c["expression"]} for c in sp["component"]
            ]
        params.append(entry)
    with open(os.path.join(out, "r4b-search-parameters.json"), "w", encoding="utf-8") as fh:
        json.dump({"fhirVersion": "4.3.0", "parameters": params}, fh, separators=(",", ":"))
    print(f"{len(params)} search parameters written")
    compartments = {}
    for name in ("patient", "encounter", "practitioner", "relatedPerson", "device"):
        cd = json.load(open(os.path.join(src, f"CompartmentDefinition-{name}.json"), encoding="utf-8"))
        compartments[cd["code"]] = {
            r["code"]: r["param"] for r in cd.get("resource", []) if r.get("param")
        }
    with open(os.path.join(out, "r4b-compartments.json"), "w", encoding="utf-8") as fh:
        json.dump({"fhirVersion": "4.3.0", "compartments": compartments}, fh, separators=(",", ":"), sort_keys=True)
    print(f"{len(compartments)} compartments written")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
