"""Governance (aliases, labels, approvals, history) as the upstream client sees it.

The governance extension lives outside the Kubeflow contract, under
`/api/registry_ext/v1` (plain JSON, called here with urllib); what it does must
show through the client's ordinary API:
- an alias (`PUT .../registered_models/{id}/aliases/{alias}`) puts a label on
  the version it points at: a custom property `<alias>` with value "" (the
  Kubeflow UI's label convention). Moving the alias moves the label; the
  client's `update()` cannot take it off;
- `get_model_version(model, "@<alias>")` finds the aliased version (what
  KServe's `model-registry://<model>/@<alias>` resolves), so version names
  starting with `@` are refused;
- the model's history records every alias change;
- approval decisions (four eyes: never by the version's creator) show as the
  custom property `approval_state`; a protected alias only points at an
  approved version.

Run through tests/compat/run.sh. Decisions by a second person need identities:
under MR_COMPAT_AUTH=jwt the tests mint a second user's token with run.sh's test
issuer (its keys sit beside MR_JWT_JWKS); without authentication every caller is
`anonymous`, the creator of every version, so those tests are skipped.
"""

from __future__ import annotations

import json
import os
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from model_registry import ModelRegistry
from model_registry.exceptions import StoreError
from mr_openapi import exceptions as mr_exceptions

from test_client import TOKEN, connect, register, server_address, uniq

EXT = "/api/registry_ext/v1"
# Who the server records as the actor: the token's subject (run.sh mints it for
# `compat-tester`), or `anonymous` without authentication.
ACTOR = "compat-tester" if TOKEN else "anonymous"
REVIEWER = "compat-reviewer"
REPO = Path(__file__).resolve().parents[2]


# --------------------------------------------------------------------------- helpers


def http(method: str, path: str, body: dict | None = None, token: str | None = TOKEN) -> tuple[int, dict]:
    """One request to the server; the answer's status and JSON body."""
    host, port = server_address()
    headers = {"Accept": "application/json"}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    if token:
        headers["Authorization"] = "Bearer " + token
    req = urllib.request.Request(f"{host}:{port}{path}", data=data, method=method, headers=headers)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def set_alias(model_id: str, alias: str, version_id: str, token: str | None = TOKEN) -> tuple[int, dict]:
    return http("PUT", f"{EXT}/registered_models/{model_id}/aliases/{alias}", {"modelVersionId": version_id}, token)


def point(model_id: str, alias: str, version_id: str) -> None:
    status, body = set_alias(model_id, alias, version_id)
    assert status == 200, f"PUT alias {alias} -> version {version_id}: {status} {body}"
    assert body["modelVersionId"] == version_id, body


def decide(version_id: str, decision: str, token: str | None, comment: str = "") -> tuple[int, dict]:
    return http(
        "POST", f"{EXT}/model_versions/{version_id}/approvals", {"decision": decision, "comment": comment}, token
    )


def set_policy(model_id: str, required: int = 1, protected: list[str] | None = None) -> None:
    body = {"requiredApprovals": required, "gates": [], "protectedAliases": protected or []}
    status, answer = http("PUT", f"{EXT}/registered_models/{model_id}/approval_policy", body)
    assert status == 200, f"PUT approval_policy: {status} {answer}"


def props(registry: ModelRegistry, name: str, version: str) -> dict:
    mv = registry.get_model_version(name, version)
    assert mv is not None, f"version {version!r} of {name!r} not found"
    return dict(mv.custom_properties or {})


def assert_label(custom: dict, alias: str) -> None:
    assert alias in custom, f"label {alias!r} missing from custom properties {custom}"
    value = custom[alias]
    assert value == "" and type(value) is str, f"label {alias!r} should be the empty string, got {value!r}"


def two_versions(registry: ModelRegistry, kind: str) -> tuple[str, str, str, str]:
    """A new model with versions v1 and v2: (name, model id, v1 id, v2 id)."""
    name = uniq(kind)
    rm = register(registry, name, "v1", uri=f"s3://compat-bucket/{name}/v1")
    register(registry, name, "v2", uri=f"s3://compat-bucket/{name}/v2")
    v1 = registry.get_model_version(name, "v1")
    v2 = registry.get_model_version(name, "v2")
    return name, rm.id, v1.id, v2.id


def second_user_token() -> str:
    """A token of a user other than the client's, from run.sh's test issuer.

    run.sh keeps the issuer's keys in `<dir of MR_JWT_JWKS>/issuer`; the issuer
    binary is target/debug/test-issuer (built by run.sh under jwt)."""
    if not TOKEN:
        pytest.skip(
            "the server runs without authentication: every caller is 'anonymous', who created every "
            "version and so may not approve it (four eyes); run with MR_COMPAT_AUTH=jwt"
        )
    jwks, iss, aud = (os.environ.get(k) for k in ("MR_JWT_JWKS", "MR_JWT_ISSUER", "MR_JWT_AUDIENCE"))
    if not (jwks and iss and aud):
        pytest.skip("MR_JWT_JWKS/MR_JWT_ISSUER/MR_JWT_AUDIENCE not set: cannot mint a second user's token")
    keys = Path(jwks).parent / "issuer"
    issuer = Path(os.environ.get("CARGO_TARGET_DIR") or REPO / "target") / "debug" / "test-issuer"
    # Without its keys the issuer would make new ones the server does not trust.
    if not ((keys / "rsa.pk8").is_file() and issuer.is_file()):
        pytest.skip(f"no test issuer to mint a second user's token ({issuer}, keys in {keys})")
    out = subprocess.run(
        [str(issuer), "token", str(keys), iss, aud, REVIEWER, "ml-team"],
        check=True,
        capture_output=True,
        text=True,
        timeout=30,
    )
    return out.stdout.strip()


@pytest.fixture(scope="module")
def registry() -> ModelRegistry:
    return connect()


@pytest.fixture(scope="module")
def reviewer() -> str:
    return second_user_token()


# --------------------------------------------------------------------------- aliases and labels


def test_alias_puts_a_label_on_its_version_and_moving_it_moves_the_label(registry):
    name, model_id, v1, v2 = two_versions(registry, "alias-label")
    assert "production" not in props(registry, name, "v1")

    point(model_id, "production", v1)
    assert_label(props(registry, name, "v1"), "production")
    assert "production" not in props(registry, name, "v2")

    point(model_id, "production", v2)
    assert "production" not in props(registry, name, "v1"), "moving the alias must take v1's label off"
    assert_label(props(registry, name, "v2"), "production")

    # the alias itself
    status, body = http("GET", f"{EXT}/registered_models/{model_id}/aliases/production")
    assert status == 200, body
    assert (body["id"], body["name"]) == (v2, "v2")

    status, body = http("DELETE", f"{EXT}/registered_models/{model_id}/aliases/production")
    assert status == 200, body
    assert body["previousModelVersionId"] == v2, body
    assert "production" not in props(registry, name, "v2"), "removing the alias must take its label off"
    status, body = http("DELETE", f"{EXT}/registered_models/{model_id}/aliases/production")
    assert status == 404, body


def test_at_alias_finds_the_aliased_version(registry):
    """KServe's `model-registry://<model>/@production`: the client's find by version name."""
    name, model_id, v1, v2 = two_versions(registry, "at-alias")
    assert registry.get_model_version(name, "@production") is None, "no alias yet"

    point(model_id, "production", v1)
    assert registry.get_model_version(name, "@production").id == v1
    point(model_id, "production", v2)
    mv = registry.get_model_version(name, "@production")
    assert mv is not None
    assert (mv.id, mv.name, mv.registered_model_id) == (v2, "v2", model_id)
    assert_label(dict(mv.custom_properties), "production")
    # what a deployment then reads: the aliased version's model artifact
    assert registry.get_model_artifact(name, "@production").uri == f"s3://compat-bucket/{name}/v2"

    # generated API: the raw find KServe's storage initializer issues
    async def find():
        async with registry._api.get_client() as client:
            return await client.find_model_version(name="@production", parent_resource_id=model_id)

    raw = registry.async_runner(find())
    assert (raw.id, raw.name) == (v2, "v2")

    # an alias of another model does not leak
    other, other_id, o1, _ = two_versions(registry, "at-alias-other")
    point(other_id, "production", o1)
    assert registry.get_model_version(name, "@production").id == v2
    assert registry.get_model_version(other, "@production").id == o1

    http("DELETE", f"{EXT}/registered_models/{model_id}/aliases/production")
    assert registry.get_model_version(name, "@production") is None


def test_client_update_keeps_the_label(registry):
    name, model_id, _, v2 = two_versions(registry, "label-update")
    point(model_id, "production", v2)

    mv = registry.get_model_version(name, "v2")
    mv.custom_properties = {**mv.custom_properties, "owner_team": "fraud", "epochs": 12}
    out = registry.update(mv)
    assert out.custom_properties["owner_team"] == "fraud"
    got = props(registry, name, "v2")
    assert_label(got, "production")
    assert (got["owner_team"], got["epochs"]) == ("fraud", 12)

    # customProperties in a PATCH replace the map, but not governance's label
    mv = registry.get_model_version(name, "v2")
    mv.custom_properties = {"owner_team": "risk"}
    registry.update(mv)
    got = props(registry, name, "v2")
    assert_label(got, "production")
    assert got["owner_team"] == "risk"
    assert "epochs" not in got
    assert registry.get_model_version(name, "@production").id == v2


def test_version_names_starting_with_at_are_refused(registry):
    name, model_id, _, v2 = two_versions(registry, "at-name")

    with pytest.raises(mr_exceptions.BadRequestException) as refused:
        register(registry, name, "@canary")
    assert refused.value.status == 400
    message = json.loads(refused.value.body)["message"]
    assert "@canary" in message and "reserved" in message, message
    assert [v.name for v in registry.get_model_versions(name)] == ["v1", "v2"]

    # where the alias exists, the client's own duplicate check finds the aliased
    # version first and refuses before asking the server to create anything
    point(model_id, "production", v2)
    with pytest.raises(StoreError, match="already exists"):
        register(registry, name, "@production")
    assert [v.name for v in registry.get_model_versions(name)] == ["v1", "v2"]

    # an alias name is not a version name either
    status, body = set_alias(model_id, "@production", v2)
    assert status == 400, body


def test_model_history_records_alias_changes(registry):
    name, model_id, v1, v2 = two_versions(registry, "alias-history")
    point(model_id, "production", v1)
    point(model_id, "production", v2)
    status, body = http("DELETE", f"{EXT}/registered_models/{model_id}/aliases/production")
    assert status == 200, body

    status, history = http("GET", f"{EXT}/registered_models/{model_id}/history")
    assert status == 200, history
    records = history["items"]
    assert [r["action"] for r in records] == ["ALIAS", "ALIAS", "ALIAS", "CREATE"], records
    assert all(r["actor"] == ACTOR for r in records), [r["actor"] for r in records]
    revisions = [int(r["revision"]) for r in records]
    assert revisions == sorted(revisions, reverse=True), f"history must be newest first: {revisions}"

    def alias_change(record: dict) -> tuple:
        (change,) = [c for c in record["changes"] if c["field"] == "aliases.production"]
        # ids as the ledger keeps them (numbers); compared as the API's strings
        return tuple(None if c is None else str(c) for c in (change["before"], change["after"]))

    assert [alias_change(r) for r in records[:3]] == [(v2, None), (v1, v2), (None, v1)]

    # the versions' own histories record their labels going on and off
    status, v1_history = http("GET", f"{EXT}/model_versions/{v1}/history")
    assert status == 200, v1_history
    assert [r["action"] for r in v1_history["items"]][:2] == ["ALIAS", "ALIAS"], v1_history["items"]


# --------------------------------------------------------------------------- approvals


def test_the_creator_may_not_approve_their_version(registry):
    """Four eyes: without authentication this is every decision (all callers are `anonymous`)."""
    name, model_id, v1, _ = two_versions(registry, "four-eyes")
    set_policy(model_id, protected=["production"])

    status, body = decide(v1, "APPROVE", TOKEN, "my own work is fine")
    assert status == 403, body
    assert "four eyes" in body["message"], body
    assert props(registry, name, "v1").get("approval_state", "PENDING") == "PENDING"

    status, body = set_alias(model_id, "production", v1)
    assert status == 409, body
    assert "protected" in body["message"], body
    assert "production" not in props(registry, name, "v1")
    assert registry.get_model_version(name, "@production") is None


def test_approval_state_shows_as_a_custom_property(registry, reviewer):
    name, model_id, v1, v2 = two_versions(registry, "approval")
    set_policy(model_id, protected=["production"])

    status, body = decide(v1, "APPROVE", reviewer, "metrics look good")
    assert status == 200, body
    assert body["state"] == "APPROVED", body
    assert [(a["actor"], a["decision"]) for a in body["approvals"]] == [(REVIEWER, "APPROVE")], body
    assert props(registry, name, "v1")["approval_state"] == "APPROVED"

    status, body = decide(v2, "REJECT", reviewer, "drift on the holdout set")
    assert status == 200, body
    assert props(registry, name, "v2")["approval_state"] == "REJECTED"

    # the protected alias takes the approved version only
    status, body = set_alias(model_id, "production", v2)
    assert status == 409, body
    point(model_id, "production", v1)
    got = props(registry, name, "v1")
    assert_label(got, "production")
    assert got["approval_state"] == "APPROVED"

    # the client cannot overwrite the state
    mv = registry.get_model_version(name, "v2")
    mv.custom_properties = {**mv.custom_properties, "approval_state": "APPROVED"}
    registry.update(mv)
    assert props(registry, name, "v2")["approval_state"] == "REJECTED"

    # a description is not what was approved; a custom property is
    mv = registry.get_model_version(name, "v1")
    mv.description = "approved by risk"
    registry.update(mv)
    assert props(registry, name, "v1")["approval_state"] == "APPROVED"
    mv = registry.get_model_version(name, "v1")
    mv.custom_properties = {**mv.custom_properties, "threshold": 0.7}
    registry.update(mv)
    got = props(registry, name, "v1")
    assert got["approval_state"] == "PENDING", "changing approved content must void the approval"
    assert got["threshold"] == 0.7
    assert_label(got, "production")


def test_client_cannot_claim_an_approval(registry):
    name, model_id, v1, _ = two_versions(registry, "approval-claim")
    mv = registry.get_model_version(name, "v1")
    mv.custom_properties = {"approval_state": "APPROVED", "note": "trust me"}
    registry.update(mv)

    status, body = http("GET", f"{EXT}/model_versions/{v1}/approval")
    assert status == 200, body
    assert body["state"] == "PENDING", body
    shown = props(registry, name, "v1").get("approval_state")
    assert shown in (None, "PENDING"), f"the client reads approval_state {shown!r}; the server says PENDING"
