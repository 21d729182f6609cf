"""Check our served OpenAPI document: its YAML form, and its schemas against
the upstream contract.

openapi.yaml (next to OUR_SPEC_URL, which ends in openapi.json) must be YAML
text, served as application/yaml, that loads to the same document as the JSON.
For every upstream entity schema (X, XCreate, XUpdate, XList) the property
names, after resolving allOf, must match ours; so must each enum's values.
Usage: check_schemas.py OUR_SPEC_URL UPSTREAM_YAML
The upstream comparison is skipped with a note when the upstream file is
absent (../shared not present); the YAML check always runs.
"""
import json
import os
import sys
import urllib.request

import yaml

# Read-only/derived names that upstream puts in some schemas and we do not accept
# on input (they are server-assigned) or vice versa; each is explained.
ALLOWED_EXTRA_UPSTREAM = {
    # upstream lists `name` in InferenceServiceUpdate; names never change here.
    ("InferenceServiceUpdate", "name"),
}


def resolve(schemas, schema, seen=()):
    """Property names and enum maps of a schema, following $ref and allOf."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        if name in seen:
            return {}
        return resolve(schemas, schemas[name], seen + (name,))
    props = {}
    for part in schema.get("allOf", []):
        props.update(resolve(schemas, part, seen))
    for key, value in schema.get("properties", {}).items():
        props[key] = value
    return props


def enum_of(schemas, prop):
    if "$ref" in prop:
        prop = schemas[prop["$ref"].rsplit("/", 1)[-1]]
    return sorted(prop.get("enum", [])) or None


def yaml_problems(ours_url, ours):
    """What is wrong with openapi.yaml, compared with the JSON document `ours`."""
    yaml_url = ours_url.rsplit("/", 1)[0] + "/openapi.yaml"
    with urllib.request.urlopen(yaml_url) as response:
        content_type = response.headers.get("content-type", "")
        text = response.read().decode()
    problems = []
    if not content_type.startswith("application/yaml"):
        problems.append(f"{yaml_url}: content type {content_type!r}")
    if text.lstrip().startswith("{"):
        problems.append(f"{yaml_url}: JSON text, not YAML")
    if yaml.safe_load(text) != ours:
        problems.append(f"{yaml_url}: not the same document as the JSON")
    return problems


def main():
    ours_url, upstream_path = sys.argv[1], sys.argv[2]
    document = json.load(urllib.request.urlopen(ours_url))
    yaml_issues = yaml_problems(ours_url, document)
    for p in yaml_issues:
        print("MISMATCH", p)
    print(f"openapi.yaml against openapi.json: {len(yaml_issues)} problems")
    if not os.path.exists(upstream_path):
        print(f"skipped: {upstream_path} not present")
        return 1 if yaml_issues else 0
    with open(upstream_path) as f:
        upstream = yaml.safe_load(f)["components"]["schemas"]
    ours = document["components"]["schemas"]
    entities = [
        "RegisteredModel", "ModelVersion", "ModelArtifact", "DocArtifact", "DataSet", "Metric",
        "Parameter", "ServingEnvironment", "InferenceService", "ServeModel", "Experiment",
        "ExperimentRun",
    ]
    # Ours accepts experimentId/experimentRunId when an artifact is created or
    # updated (upstream only returns them), so any endpoint can link an
    # artifact to the run that produced it.
    allowed_extra_ours = {
        (a + suffix, f)
        for a in ["ModelArtifact", "DocArtifact", "DataSet", "Metric", "Parameter"]
        for suffix in ["Create", "Update"]
        for f in ["experimentId", "experimentRunId"]
    }
    problems, checked = [], 0
    for entity in entities:
        for suffix in ["", "Create", "Update", "List"]:
            name = entity + suffix
            if name not in upstream:
                continue
            if name not in ours:
                problems.append(f"{name}: missing")
                continue
            theirs_p = resolve(upstream, upstream[name])
            ours_p = resolve(ours, ours[name])
            for prop in sorted(set(theirs_p) - set(ours_p)):
                if (name, prop) not in ALLOWED_EXTRA_UPSTREAM:
                    problems.append(f"{name}.{prop}: in upstream, not in ours")
            for prop in sorted(set(ours_p) - set(theirs_p)):
                if (name, prop) not in allowed_extra_ours:
                    problems.append(f"{name}.{prop}: in ours, not in upstream")
            for prop in sorted(set(ours_p) & set(theirs_p)):
                a, b = enum_of(upstream, theirs_p[prop]), enum_of(ours, ours_p[prop])
                if a and b != a:
                    problems.append(f"{name}.{prop}: enum {b} vs upstream {a}")
            checked += 1
    for p in problems:
        print("MISMATCH", p)
    print(f"schemas compared with upstream: {checked}, mismatches: {len(problems)}")
    return 1 if problems or yaml_issues else 0


if __name__ == "__main__":
    sys.exit(main())
