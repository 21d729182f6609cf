"""Compatibility tests: the upstream `model-registry` Python client against our server.

Run through tests/compat/run.sh, which installs the client (0.3.18 -> /api/model_registry/v1,
0.3.9 -> /api/model_registry/v1alpha3), starts registry-local and exports MR_URL.
The same file serves both client versions; differences are feature-detected.

Most tests use the public `ModelRegistry` API exactly as a data scientist would. A few
(marked "generated API") go one level lower, through the client's own generated
`mr_openapi` layer, for server behaviours the high-level API cannot reach
(409 conflicts, struct custom properties, external-id lookups).
"""

from __future__ import annotations

import base64
import inspect
import json
import os
import re
import socket
import time
import uuid
import warnings
from urllib.parse import urlparse

import pytest

import model_registry
from model_registry import ModelRegistry
from model_registry.exceptions import StoreError
from model_registry.types import (
    ArtifactState,
    ModelArtifact,
    ModelVersion,
    ModelVersionState,
    RegisteredModel,
    RegisteredModelState,
)
from mr_openapi import exceptions as mr_exceptions

CLIENT_VERSION = tuple(int(p) for p in re.findall(r"\d+", model_registry.__version__)[:3])
# Clients up to 0.3.11 talk to /v1alpha3, 0.3.12 and later to /v1.
EXPECTED_PREFIX = "/api/model_registry/v1" if CLIENT_VERSION >= (0, 3, 12) else "/api/model_registry/v1alpha3"

AUTHOR = "compat-tester"
ID_RE = re.compile(r"^[1-9][0-9]{0,8}$")
TS_RE = re.compile(r"^[0-9]+$")
PAGER_CAP = 5000  # a pager yielding more than this is taken as looping forever
SESSION_START_MS = int(time.time() * 1000)

PREFIX = os.environ.get("MR_COMPAT_PREFIX") or f"compat-{uuid.uuid4().hex[:8]}"
# Set by run.sh when the server runs with MR_AUTH=jwt: a token of its test issuer.
TOKEN = os.environ.get("MR_USER_TOKEN") or None


# --------------------------------------------------------------------------- helpers


def uniq(kind: str) -> str:
    return f"{PREFIX}-{kind}-{uuid.uuid4().hex[:8]}"


def server_address() -> tuple[str, int]:
    url = os.environ.get("MR_URL")
    if not url:
        pytest.fail("MR_URL is not set (e.g. MR_URL=http://127.0.0.1:8080); use tests/compat/run.sh")
    parsed = urlparse(url)
    assert parsed.hostname and parsed.port, f"MR_URL must be http://host:port, got {url!r}"
    return f"{parsed.scheme}://{parsed.hostname}", parsed.port


def connect(**kwargs) -> ModelRegistry:
    host, port = server_address()
    args = {"port": port, "author": AUTHOR, "is_secure": False, "user_token": TOKEN}
    args.update(kwargs)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="User access token is missing")
        return ModelRegistry(host, **args)


def ts(value: str | None) -> int:
    """A timestamp as the client exposes it: a string of epoch milliseconds."""
    assert isinstance(value, str), f"timestamp should be a str, got {value!r}"
    assert TS_RE.match(value), f"timestamp should be digits, got {value!r}"
    ms = int(value)
    now = int(time.time() * 1000)
    assert SESSION_START_MS - 600_000 <= ms <= now + 60_000, f"timestamp {ms} is not epoch milliseconds near now ({now})"
    return ms


def assert_id(value: str | None) -> str:
    assert isinstance(value, str) and ID_RE.match(value), f"id should be a decimal string, got {value!r}"
    return value


def assert_props(got, expected: dict) -> None:
    """Every custom property round-trips with its value AND its Python type."""
    got = dict(got or {})
    assert set(got) == set(expected), f"custom property keys differ: got {sorted(got)}, want {sorted(expected)}"
    for key, want in expected.items():
        assert got[key] == want, f"custom property {key!r}: got {got[key]!r}, want {want!r}"
        assert type(got[key]) is type(want), (
            f"custom property {key!r}: got type {type(got[key]).__name__} ({got[key]!r}), "
            f"want {type(want).__name__} ({want!r})"
        )


def register(registry: ModelRegistry, name: str, version: str = "v1", **kwargs) -> RegisteredModel:
    args = {
        "model_format_name": "onnx",
        "model_format_version": "1",
        "version": version,
    }
    args.update(kwargs)
    uri = args.pop("uri", f"s3://compat-bucket/{name}/{version}")
    return registry.register_model(name, uri, **args)


def collect(pager, record: list | None = None) -> list:
    """Iterate a client Pager to the end; optionally record (token_in, n_items, token_out) per page."""
    if record is not None:
        page_fn = pager.page_fn

        def recording(options):
            token_in = options.next_page_token
            items = page_fn(options)
            record.append((token_in, len(items), options.next_page_token))
            return items

        pager.page_fn = recording
    out = []
    seen: dict[str, int] = {}
    for item in pager:
        if item.id in seen:
            pytest.fail(
                f"pager yielded id {item.id} ({item.name!r}) twice, at positions {seen[item.id]} and {len(out)}: "
                f"the end of the list was not detected (nextPageToken must be \"\" on the last page, "
                f"\"\" must mean the first page, and tokens must be deterministic); pages so far: {record}"
            )
        seen[item.id] = len(out)
        out.append(item)
        assert len(out) <= PAGER_CAP, "pager keeps yielding items: end of list not detected"
    return out


def names(items) -> list[str]:
    return [i.name for i in items]


@pytest.fixture(scope="session")
def registry() -> ModelRegistry:
    return connect()


# --------------------------------------------------------------------------- construction


def test_client_version_and_prefix():
    """Sanity check of the harness: the installed client talks to the prefix we think it does."""
    import mr_openapi.api.model_registry_service_api as api_mod

    src = inspect.getsource(api_mod)
    assert f'"{EXPECTED_PREFIX}/registered_models"' in src, (
        f"model-registry {model_registry.__version__} does not use {EXPECTED_PREFIX}"
    )


def test_construction_probes_server():
    """The constructor lists registered models (pageSize=1); it must succeed."""
    reg = connect()
    assert isinstance(reg, ModelRegistry)


def test_construction_fails_without_server():
    """Proves the probe really talks to the server: a closed port makes the constructor raise."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    closed_port = s.getsockname()[1]
    s.close()
    with pytest.raises(Exception):  # noqa: B017, PT011 - aiohttp connection error, type depends on version
        connect(port=closed_port)


def test_construction_with_port_in_url():
    host, port = server_address()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="User access token is missing")
        reg = ModelRegistry(f"{host}:{port}", author=AUTHOR, is_secure=False, user_token=TOKEN)
        assert reg.get_registered_model(uniq("absent")) is None
        if inspect.signature(ModelRegistry.__init__).parameters["is_secure"].default is None:
            # 0.3.12+: port and is_secure are inferred from an http:// URL
            reg = ModelRegistry(f"{host}:{port}", author=AUTHOR, user_token=TOKEN)
            assert reg.get_registered_model(uniq("absent")) is None


def test_construction_with_user_token():
    """Clients in Kubeflow always send `Authorization: Bearer <token>`. Without
    authentication the server must not choke on it; with MR_AUTH=jwt a token
    that is not a valid JWT is refused at construction (the client probes a list)."""
    if TOKEN:
        with pytest.raises(Exception) as refused:
            connect(user_token="compat-dummy-token")
        assert "401" in str(refused.value) or "Unauthorized" in str(refused.value), refused.value
        return
    reg = connect(user_token="compat-dummy-token")
    name = uniq("token")
    register(reg, name)
    assert reg.get_registered_model(name) is not None


@pytest.mark.skipif(not TOKEN, reason="the server runs without authentication (MR_AUTH=none)")
def test_without_a_token_the_client_is_refused():
    with pytest.raises(Exception) as refused:
        connect(user_token=None)
    assert "401" in str(refused.value) or "Unauthorized" in str(refused.value), refused.value


@pytest.mark.skipif(not TOKEN, reason="the server runs without authentication (MR_AUTH=none)")
def test_pipeline_token_from_a_file(tmp_path, monkeypatch):
    """Pipelines mount a service-account token and point KF_PIPELINES_SA_TOKEN_PATH at it."""
    path = tmp_path / "token"
    path.write_text(TOKEN)
    monkeypatch.setenv("KF_PIPELINES_SA_TOKEN_PATH", str(path))
    reg = connect(user_token=None)
    name = uniq("sa-token")
    register(reg, name)
    assert reg.get_registered_model(name) is not None


# --------------------------------------------------------------------------- register + read back


def test_register_model_round_trip(registry):
    name = uniq("rt")
    metadata = {
        "str": "hello",
        "unicode": "héllo wörld ✓",
        "empty_label": "",
        "int": 42,
        "zero": 0,
        "negative_int": -7,
        "big_int": 999_999_999,  # the client itself rejects ints over 9 digits
        "big_negative_int": -999_999_999,
        "float": 3.14159,
        "negative_float": -0.5,
        "tiny_float": 1e-7,
        "huge_float": 1.5e300,
        "bool_true": True,
        "bool_false": False,
    }
    rm = registry.register_model(
        name,
        "s3://compat-bucket/models/rt?endpoint=http://minio:9000&defaultRegion=us-east-1",
        version="1.0.0",
        model_format_name="onnx",
        model_format_version="1.17",
        version_description="first version",
        storage_key="my-data-connection",
        storage_path="models/rt",
        service_account_name="sa-reader",
        model_source_kind="kfp",
        model_source_class="pipelinerun",
        model_source_group="team-a",
        model_source_id="run-123",
        model_source_name="training pipeline",
        metadata=metadata,
    )
    # returned RegisteredModel
    assert isinstance(rm, RegisteredModel)
    assert rm.name == name
    rm_id = assert_id(rm.id)
    assert rm.owner == AUTHOR
    assert rm.state == RegisteredModelState.LIVE

    # get_registered_model
    got = registry.get_registered_model(name)
    assert got is not None
    assert got.id == rm_id
    assert got.name == name
    assert got.owner == AUTHOR
    assert got.state == RegisteredModelState.LIVE
    assert got.description is None
    assert not got.custom_properties
    assert ts(got.create_time_since_epoch) <= ts(got.last_update_time_since_epoch)

    # get_model_version
    mv = registry.get_model_version(name, "1.0.0")
    assert isinstance(mv, ModelVersion)
    mv_id = assert_id(mv.id)
    assert mv.name == "1.0.0"
    assert mv.author == AUTHOR
    assert mv.description == "first version"
    assert mv.state == ModelVersionState.LIVE
    assert mv.registered_model_id == rm_id
    assert ts(mv.create_time_since_epoch) <= ts(mv.last_update_time_since_epoch)
    assert_props(mv.custom_properties, metadata)

    # get_model_artifact
    ma = registry.get_model_artifact(name, "1.0.0")
    assert isinstance(ma, ModelArtifact)
    assert_id(ma.id)
    assert ma.name == name  # the client names the artifact after the model
    assert ma.uri == "s3://compat-bucket/models/rt?endpoint=http://minio:9000&defaultRegion=us-east-1"
    assert ma.model_format_name == "onnx"
    assert ma.model_format_version == "1.17"
    assert ma.storage_key == "my-data-connection"
    assert ma.storage_path == "models/rt"
    assert ma.service_account_name == "sa-reader"
    assert ma.model_source_kind == "kfp"
    assert ma.model_source_class == "pipelinerun"
    assert ma.model_source_group == "team-a"
    assert ma.model_source_id == "run-123"
    assert ma.model_source_name == "training pipeline"
    assert ma.state == ArtifactState.UNKNOWN  # the client creates artifacts in state UNKNOWN
    assert ma.description is None
    assert not ma.custom_properties
    assert ts(ma.create_time_since_epoch) <= ts(ma.last_update_time_since_epoch)

    # the version is listed under its model
    versions = collect(registry.get_model_versions(name))
    assert [(v.id, v.name) for v in versions] == [(mv_id, "1.0.0")]


def test_register_model_integral_float_metadata(registry):
    """A float with an integral value: upstream (Go) answers `2`, which the client reads back as int 2."""
    name = uniq("intfloat")
    register(registry, name, metadata={"f": 2.0})
    mv = registry.get_model_version(name, "v1")
    assert mv.custom_properties["f"] == 2.0
    assert type(mv.custom_properties["f"]) in (int, float)


def test_register_model_minimal_has_no_optional_fields(registry):
    name = uniq("minimal")
    register(registry, name)
    mv = registry.get_model_version(name, "v1")
    assert mv.description is None
    assert not mv.custom_properties
    assert mv.external_id is None
    ma = registry.get_model_artifact(name, "v1")
    for field in (
        "description",
        "external_id",
        "storage_key",
        "storage_path",
        "service_account_name",
        "model_source_kind",
        "model_source_class",
        "model_source_group",
        "model_source_id",
        "model_source_name",
    ):
        assert getattr(ma, field) is None, f"{field} should be unset, got {getattr(ma, field)!r}"


def test_register_model_explicit_author_and_owner(registry):
    name = uniq("who")
    rm = register(registry, name, author="alice", owner="bob")
    assert rm.owner == "bob"
    assert registry.get_registered_model(name).owner == "bob"
    assert registry.get_model_version(name, "v1").author == "alice"


def test_register_model_deprecated_description_kwarg(registry):
    name = uniq("depr")
    with pytest.warns(DeprecationWarning):
        register(registry, name, description="via deprecated kwarg")
    assert registry.get_model_version(name, "v1").description == "via deprecated kwarg"


def test_register_second_version_reuses_model(registry):
    name = uniq("two")
    rm1 = register(registry, name, "v1", uri="s3://b/one", owner="first-owner")
    time.sleep(0.005)
    rm2 = register(registry, name, "v2", uri="s3://b/two", owner="ignored-owner", model_format_name="pytorch")
    assert rm1.id == rm2.id
    assert rm2.owner == "first-owner"  # the existing model is reused as is
    assert registry.get_registered_model(name).owner == "first-owner"

    v1 = registry.get_model_version(name, "v1")
    v2 = registry.get_model_version(name, "v2")
    assert v1.id != v2.id
    assert int(v2.id) > int(v1.id), "ids must grow over time (the highest id is the latest version)"
    assert v1.registered_model_id == v2.registered_model_id == rm1.id

    a1 = registry.get_model_artifact(name, "v1")
    a2 = registry.get_model_artifact(name, "v2")
    assert a1.id != a2.id
    assert (a1.uri, a1.model_format_name) == ("s3://b/one", "onnx")
    assert (a2.uri, a2.model_format_name) == ("s3://b/two", "pytorch")
    assert a1.name == a2.name == name  # same artifact name, scoped per version

    assert names(collect(registry.get_model_versions(name))) == ["v1", "v2"]


def test_names_with_special_characters(registry):
    """Names travel in query strings (find by name); they must be decoded exactly."""
    name = uniq("spécial ünïcode") + " a/b:c+d&e=f%g?h#i 'quoted' \"dq\""
    version = "1.0.0+build/7 ü"
    register(registry, name, version, uri="s3://b/special")
    rm = registry.get_registered_model(name)
    assert rm is not None and rm.name == name
    mv = registry.get_model_version(name, version)
    assert mv is not None and mv.name == version
    ma = registry.get_model_artifact(name, version)
    assert ma is not None and ma.name == name and ma.uri == "s3://b/special"
    # similar but different names must not match
    assert registry.get_registered_model(name + " ") is None
    assert registry.get_registered_model(name.replace("+", " ")) is None
    assert registry.get_model_version(name, version.replace("+", " ")) is None


# --------------------------------------------------------------------------- errors / not found


def test_duplicate_version_raises_store_error(registry):
    name = uniq("dup")
    register(registry, name, "v1", uri="s3://b/original")
    with pytest.raises(StoreError, match="already exists") as excinfo:
        register(registry, name, "v1", uri="s3://b/second")
    assert excinfo.type is StoreError
    # nothing changed
    assert registry.get_model_artifact(name, "v1").uri == "s3://b/original"
    assert names(collect(registry.get_model_versions(name))) == ["v1"]


def test_get_missing_things(registry):
    missing = uniq("does-not-exist")
    assert registry.get_registered_model(missing) is None
    with pytest.raises(StoreError, match="does not exist"):
        registry.get_model_version(missing, "v1")
    with pytest.raises(StoreError, match="does not exist"):
        registry.get_model_artifact(missing, "v1")
    with pytest.raises(StoreError, match="does not exist"):
        registry.get_model_versions(missing)

    name = uniq("exists")
    register(registry, name)
    assert registry.get_model_version(name, "nope") is None
    with pytest.raises(StoreError, match="does not exist"):
        registry.get_model_artifact(name, "nope")


def test_generated_api_not_found_by_id(registry):
    """generated API: GET by unknown id is a 404 (the client maps it to None)."""
    assert registry.async_runner(registry._api.get_registered_model_by_id("999999999")) is None
    assert registry.async_runner(registry._api.get_model_version_by_id("999999999")) is None
    assert registry.async_runner(registry._api.get_model_artifact_by_id("999999999")) is None


def _assert_error_body(exc: mr_exceptions.ApiException, status: int) -> None:
    assert exc.status == status
    body = json.loads(exc.body)
    assert isinstance(body.get("code"), str) and body["code"], f"error body without code: {exc.body!r}"
    assert isinstance(body.get("message"), str) and body["message"], f"error body without message: {exc.body!r}"


def test_generated_api_duplicate_names_conflict(registry):
    """generated API: creating a model or a version with a taken name answers 409 {code, message}."""
    name = uniq("conflict")
    rm = register(registry, name)
    with pytest.raises(mr_exceptions.ConflictException) as excinfo:
        registry.async_runner(registry._api.upsert_registered_model(RegisteredModel(name=name)))
    _assert_error_body(excinfo.value, 409)

    with pytest.raises(mr_exceptions.ConflictException) as excinfo:
        registry.async_runner(registry._api.upsert_model_version(ModelVersion(name="v1", author=AUTHOR), rm.id))
    _assert_error_body(excinfo.value, 409)

    # the same version name under another model is fine
    other = uniq("conflict-other")
    register(registry, other, "v1")
    assert registry.get_model_version(other, "v1").registered_model_id != rm.id


def test_generated_api_version_for_missing_model(registry):
    with pytest.raises(mr_exceptions.ApiException) as excinfo:
        registry.async_runner(registry._api.upsert_model_version(ModelVersion(name="v1"), "999999999"))
    assert 400 <= excinfo.value.status < 500, f"expected a 4xx, got {excinfo.value.status}"


# --------------------------------------------------------------------------- updates


def test_update_registered_model(registry):
    name = uniq("upd-rm")
    register(registry, name)
    before = registry.get_registered_model(name)
    created = ts(before.create_time_since_epoch)
    last = ts(before.last_update_time_since_epoch)

    rm = registry.get_registered_model(name)
    rm.description = "a model description"
    props = {"team": "ml", "priority": 1, "score": 0.75, "public": False, "label": ""}
    rm.custom_properties = props
    out = registry.update(rm)
    assert out.id == before.id
    assert out.description == "a model description"
    assert_props(out.custom_properties, props)
    assert ts(out.last_update_time_since_epoch) > last

    got = registry.get_registered_model(name)
    assert got.description == "a model description"
    assert got.owner == AUTHOR
    assert got.state == RegisteredModelState.LIVE
    assert_props(got.custom_properties, props)
    assert ts(got.create_time_since_epoch) == created
    assert ts(got.last_update_time_since_epoch) > last
    last = ts(got.last_update_time_since_epoch)

    # customProperties in a PATCH replace the whole map
    got.custom_properties = {"priority": 2, "new": "x"}
    registry.update(got)
    got = registry.get_registered_model(name)
    assert_props(got.custom_properties, {"priority": 2, "new": "x"})
    assert ts(got.last_update_time_since_epoch) > last
    last = ts(got.last_update_time_since_epoch)

    # archive
    got.state = RegisteredModelState.ARCHIVED
    out = registry.update(got)
    assert out.state == RegisteredModelState.ARCHIVED
    got = registry.get_registered_model(name)
    assert got.state == RegisteredModelState.ARCHIVED
    assert got.description == "a model description"
    assert_props(got.custom_properties, {"priority": 2, "new": "x"})
    assert ts(got.last_update_time_since_epoch) > last
    last = ts(got.last_update_time_since_epoch)
    # an archived model is still found, listed, and its versions readable
    assert got.id in {m.id for m in collect(registry.get_registered_models().page_size(100))}
    assert registry.get_model_version(name, "v1") is not None

    # unarchive
    got.state = RegisteredModelState.LIVE
    registry.update(got)
    got = registry.get_registered_model(name)
    assert got.state == RegisteredModelState.LIVE
    assert ts(got.last_update_time_since_epoch) > last


def test_update_with_empty_custom_properties_keeps_them(registry):
    """The client omits customProperties when the dict is empty; an absent map must be kept."""
    name = uniq("keep-props")
    register(registry, name, metadata={"k": "v"})
    mv = registry.get_model_version(name, "v1")
    mv.custom_properties = {}
    mv.description = "changed"
    registry.update(mv)
    mv = registry.get_model_version(name, "v1")
    assert mv.description == "changed"
    assert_props(mv.custom_properties, {"k": "v"})


def test_update_last_update_time_strictly_increases(registry):
    """Back-to-back updates (same millisecond is likely) must still give strictly increasing times."""
    name = uniq("rapid")
    register(registry, name)
    rm = registry.get_registered_model(name)
    stamps = [ts(rm.last_update_time_since_epoch)]
    for i in range(6):
        rm.description = f"rev {i}"
        rm = registry.update(rm)
        stamps.append(ts(rm.last_update_time_since_epoch))
    assert all(b > a for a, b in zip(stamps, stamps[1:])), f"not strictly increasing: {stamps}"
    mv = registry.get_model_version(name, "v1")
    stamps = [ts(mv.last_update_time_since_epoch)]
    for i in range(6):
        mv.description = f"rev {i}"
        mv = registry.update(mv)
        stamps.append(ts(mv.last_update_time_since_epoch))
    assert all(b > a for a, b in zip(stamps, stamps[1:])), f"not strictly increasing: {stamps}"


def test_update_model_version(registry):
    name = uniq("upd-mv")
    rm = register(registry, name, "v1", metadata={"a": 1, "drop_me": "x"}, version_description="orig")
    register(registry, name, "v2")
    before = registry.get_model_version(name, "v1")
    last = ts(before.last_update_time_since_epoch)

    mv = registry.get_model_version(name, "v1")
    mv.description = "updated description"
    mv.author = "someone-else"
    props = {"a": 2, "b": "text", "c": 1.25, "d": True, "e": "", "f": -3}
    mv.custom_properties = props
    out = registry.update(mv)
    assert out.id == before.id
    assert out.name == "v1"
    assert out.description == "updated description"
    assert_props(out.custom_properties, props)

    got = registry.get_model_version(name, "v1")
    assert got.id == before.id
    assert got.description == "updated description"
    assert got.author == "someone-else"
    assert got.state == ModelVersionState.LIVE
    assert got.registered_model_id == rm.id
    assert_props(got.custom_properties, props)
    assert got.create_time_since_epoch == before.create_time_since_epoch
    assert ts(got.last_update_time_since_epoch) > last
    last = ts(got.last_update_time_since_epoch)

    # archive
    got.state = ModelVersionState.ARCHIVED
    out = registry.update(got)
    assert out.state == ModelVersionState.ARCHIVED
    got = registry.get_model_version(name, "v1")
    assert got.state == ModelVersionState.ARCHIVED
    assert got.description == "updated description"
    assert_props(got.custom_properties, props)
    assert ts(got.last_update_time_since_epoch) > last
    last = ts(got.last_update_time_since_epoch)
    # still listed (no state filter), other version untouched, artifact still reachable
    listed = {v.name: v.state for v in collect(registry.get_model_versions(name))}
    assert listed == {"v1": ModelVersionState.ARCHIVED, "v2": ModelVersionState.LIVE}
    assert registry.get_model_artifact(name, "v1") is not None

    # unarchive
    got.state = ModelVersionState.LIVE
    registry.update(got)
    got = registry.get_model_version(name, "v1")
    assert got.state == ModelVersionState.LIVE
    assert ts(got.last_update_time_since_epoch) > last


def test_update_model_artifact(registry):
    name = uniq("upd-ma")
    register(registry, name, storage_key="key-1", storage_path="path/1")
    before = registry.get_model_artifact(name, "v1")
    last = ts(before.last_update_time_since_epoch)

    ma = registry.get_model_artifact(name, "v1")
    ma.description = "artifact description"
    ma.uri = "s3://compat-bucket/moved/model.onnx"
    ma.model_format_version = "2"
    ma.storage_path = "path/2"
    ma.state = ArtifactState.LIVE
    props = {"sha": "abc123", "size": 1024, "ratio": 0.5, "signed": True}
    ma.custom_properties = props
    out = registry.update(ma)
    assert isinstance(out, ModelArtifact)
    assert out.id == before.id
    assert out.uri == "s3://compat-bucket/moved/model.onnx"
    assert out.state == ArtifactState.LIVE

    got = registry.get_model_artifact(name, "v1")
    assert got.id == before.id
    assert got.name == name
    assert got.description == "artifact description"
    assert got.uri == "s3://compat-bucket/moved/model.onnx"
    assert got.model_format_name == "onnx"
    assert got.model_format_version == "2"
    assert got.storage_key == "key-1"
    assert got.storage_path == "path/2"
    assert got.state == ArtifactState.LIVE
    assert_props(got.custom_properties, props)
    assert got.create_time_since_epoch == before.create_time_since_epoch
    assert ts(got.last_update_time_since_epoch) > last
    last = ts(got.last_update_time_since_epoch)

    got.state = ArtifactState.MARKED_FOR_DELETION
    registry.update(got)
    got = registry.get_model_artifact(name, "v1")
    assert got.state == ArtifactState.MARKED_FOR_DELETION
    assert ts(got.last_update_time_since_epoch) > last


def test_generated_api_external_id(registry):
    """generated API: externalId set through update() is findable, and unique (409) among models."""
    name = uniq("ext")
    register(registry, name)
    ext = uniq("external-id")
    rm = registry.get_registered_model(name)
    rm.external_id = ext
    registry.update(rm)
    assert registry.get_registered_model(name).external_id == ext
    found = registry.async_runner(registry._api.get_registered_model_by_params(external_id=ext))
    assert found is not None and found.name == name
    assert registry.async_runner(registry._api.get_registered_model_by_params(external_id=ext + "-no")) is None

    other = uniq("ext-other")
    register(registry, other)
    rm2 = registry.get_registered_model(other)
    rm2.external_id = ext
    with pytest.raises(mr_exceptions.ConflictException) as excinfo:
        registry.update(rm2)
    assert excinfo.value.status == 409  # the PATCH operation declares no 409 body, so only the status is seen
    assert registry.get_registered_model(other).external_id is None


def test_generated_api_struct_custom_property(registry):
    """The high-level client only sends str/int/float/bool; a struct (set by other tools) is read back as its base64 string."""
    from mr_openapi import MetadataStringValue, MetadataStructValue, MetadataValue, ModelVersionCreate

    name = uniq("struct")
    rm = register(registry, name)
    payload = {"layers": [1, 2, 3], "optimizer": {"name": "adam", "lr": 0.01}, "frozen": True}
    encoded = base64.b64encode(json.dumps(payload).encode()).decode()

    async def create():
        async with registry._api.get_client() as client:
            return await client.create_model_version(
                ModelVersionCreate(
                    name="struct-version",
                    registeredModelId=rm.id,
                    author=AUTHOR,
                    customProperties={
                        "config": MetadataValue(
                            MetadataStructValue(struct_value=encoded, metadataType="MetadataStructValue")
                        ),
                        "plain": MetadataValue(
                            MetadataStringValue(string_value="p", metadataType="MetadataStringValue")
                        ),
                    },
                )
            )

    created = registry.async_runner(create())
    config = created.custom_properties["config"].actual_instance
    assert isinstance(config, MetadataStructValue)
    assert json.loads(base64.b64decode(config.struct_value)) == payload

    mv = registry.get_model_version(name, "struct-version")
    assert mv.custom_properties["plain"] == "p"
    assert isinstance(mv.custom_properties["config"], str)
    assert json.loads(base64.b64decode(mv.custom_properties["config"])) == payload


# --------------------------------------------------------------------------- pagination


def test_model_versions_pagination(registry):
    name = uniq("paged-mv")
    versions = [f"v{i}" for i in range(7)]
    for v in versions:
        register(registry, name, v)
        time.sleep(0.003)  # distinct creation times

    pages: list = []
    got = collect(registry.get_model_versions(name).page_size(3), record=pages)
    assert names(got) == versions
    ids = [int(mv.id) for mv in got]
    assert ids == sorted(ids) and len(set(ids)) == 7
    assert pages[0][0] is None, "first request must carry no page token"
    assert pages[0][1] == 3, f"pageSize=3 not honoured on the first page: {pages}"
    assert all(n <= 3 for _, n, _ in pages), f"a page exceeded pageSize=3: {pages}"
    assert len(pages) >= 3, f"7 items at pageSize=3 need at least 3 pages: {pages}"

    # the same walk twice yields the same tokens (deterministic keyset tokens)
    again: list = []
    collect(registry.get_model_versions(name).page_size(3), record=again)
    assert again == pages

    for size in (1, 2, 6, 7, 8, 100):
        assert names(collect(registry.get_model_versions(name).page_size(size))) == versions, f"page_size({size})"
    assert names(collect(registry.get_model_versions(name))) == versions, "no page size"

    desc = collect(registry.get_model_versions(name).order_by_id().descending().page_size(3))
    assert names(desc) == versions[::-1]
    asc = collect(registry.get_model_versions(name).order_by_id().ascending().page_size(2))
    assert names(asc) == versions

    assert names(collect(registry.get_model_versions(name).order_by_creation_time().page_size(3))) == versions
    assert (
        names(collect(registry.get_model_versions(name).order_by_creation_time().descending().page_size(3)))
        == versions[::-1]
    )

    # touching v2 makes it the most recently updated
    time.sleep(0.003)
    mv = registry.get_model_version(name, "v2")
    mv.description = "touched"
    registry.update(mv)
    expected = [v for v in versions if v != "v2"] + ["v2"]
    assert names(collect(registry.get_model_versions(name).order_by_update_time().page_size(3))) == expected
    assert (
        names(collect(registry.get_model_versions(name).order_by_update_time().descending().page_size(3)))
        == expected[::-1]
    )
    # default order is still ID
    assert names(collect(registry.get_model_versions(name).page_size(3))) == versions


def test_registered_models_pagination(registry):
    prefix = uniq("paged-rm")
    model_names = [f"{prefix}-{i}" for i in range(7)]
    for n in model_names:
        register(registry, n)
        time.sleep(0.003)

    def mine(items):
        return [m.name for m in items if m.name.startswith(prefix + "-")]

    pages: list = []
    small = collect(registry.get_registered_models().page_size(2), record=pages)
    ids = [m.id for m in small]
    assert len(ids) == len(set(ids)), "a model was yielded twice"
    assert [int(i) for i in ids] == sorted(int(i) for i in ids), "default order must be ID ascending"
    assert mine(small) == model_names
    assert all(n <= 2 for _, n, _ in pages), f"a page exceeded pageSize=2: {pages}"
    assert len(pages) >= 4

    # same set as one big page and as the unpaged listing
    big = collect(registry.get_registered_models().page_size(1000))
    unpaged = collect(registry.get_registered_models())
    assert [m.id for m in big] == ids
    assert [m.id for m in unpaged] == ids

    assert mine(collect(registry.get_registered_models().order_by_id().descending().page_size(3))) == model_names[::-1]
    assert mine(collect(registry.get_registered_models().order_by_creation_time().page_size(3))) == model_names
    assert (
        mine(collect(registry.get_registered_models().order_by_creation_time().descending().page_size(4)))
        == model_names[::-1]
    )

    # updating the first one moves it to the end in update-time order
    time.sleep(0.003)
    rm = registry.get_registered_model(model_names[0])
    rm.description = "touched"
    registry.update(rm)
    by_update = mine(collect(registry.get_registered_models().order_by_update_time().page_size(3)))
    assert by_update == model_names[1:] + model_names[:1]


def test_pager_on_model_without_other_versions_terminates(registry):
    """A single-item list: the first page has an empty token; the pager must stop after one item."""
    name = uniq("single")
    register(registry, name)
    pages: list = []
    got = collect(registry.get_model_versions(name).page_size(5), record=pages)
    assert names(got) == ["v1"]
    assert pages[0][2] == "", f"a last page must answer nextPageToken \"\": {pages}"


# --------------------------------------------------------------------------- artifacts of a version / filters


def test_generated_api_version_artifacts(registry):
    """generated API: list a version's artifacts, add a doc artifact, re-upsert an artifact by id."""
    from model_registry.types import DocArtifact, ListOptions
    from mr_openapi import OrderByField

    name = uniq("arts")
    register(registry, name, uri="s3://b/arts/model")
    mv = registry.get_model_version(name, "v1")
    api = registry._api

    arts = registry.async_runner(api.get_model_version_artifacts(mv.id))
    assert [(type(a), a.uri) for a in arts] == [(ModelArtifact, "s3://b/arts/model")]
    model_art = arts[0]

    time.sleep(0.003)
    doc = registry.async_runner(
        api.upsert_model_version_artifact(DocArtifact(name="readme", uri="https://example.com/readme.md"), mv.id)
    )
    assert isinstance(doc, DocArtifact)
    assert_id(doc.id)
    assert doc.uri == "https://example.com/readme.md"

    arts = registry.async_runner(api.get_model_version_artifacts(mv.id))
    assert [(type(a), a.id) for a in arts] == [(ModelArtifact, model_art.id), (DocArtifact, doc.id)]
    models_only = registry.async_runner(api.get_model_artifacts(mv.id))
    assert [a.id for a in models_only] == [model_art.id]
    newest_first = registry.async_runner(
        api.get_model_version_artifacts(mv.id, ListOptions(order_by=OrderByField.CREATE_TIME, is_asc=False))
    )
    assert [a.id for a in newest_first] == [doc.id, model_art.id]

    # a second doc artifact with the same name in the same version is a conflict
    with pytest.raises(mr_exceptions.ConflictException):
        registry.async_runner(api.upsert_model_version_artifact(DocArtifact(name="readme", uri="x://y"), mv.id))

    # upsert of an existing artifact (with id) updates it in place
    model_art.description = "re-upserted"
    again = registry.async_runner(api.upsert_model_version_artifact(model_art, mv.id))
    assert isinstance(again, ModelArtifact)
    assert again.id == model_art.id
    assert again.description == "re-upserted"
    assert registry.get_model_artifact(name, "v1").description == "re-upserted"
    assert len(registry.async_runner(api.get_model_version_artifacts(mv.id))) == 2


def test_generated_api_filter_query(registry):
    """generated API: filterQuery on the registered model list (the UI and power users rely on it)."""
    prefix = uniq("filter")
    specs = [("a", 1, 0.5), ("b", 5, 1.5), ("a", 9, 2.5)]
    model_names = []
    for i, (team, priority, score) in enumerate(specs):
        n = f"{prefix}-{i}"
        register(registry, n)
        rm = registry.get_registered_model(n)
        rm.custom_properties = {"team": team, "priority": priority, "score": score}
        registry.update(rm)
        model_names.append(n)

    def query(q: str) -> list[str]:
        async def run():
            async with registry._api.get_client() as client:
                return await client.get_registered_models(filter_query=q, page_size="100")

        return sorted(m.name for m in (registry.async_runner(run()).items or []))

    n0, n1, n2 = model_names
    mine = f"name LIKE '{prefix}-%'"
    assert query(f"name = '{n0}'") == [n0]
    assert query(mine) == model_names
    assert query(f"{mine} AND team = 'a'") == [n0, n2]
    assert query(f"{mine} AND priority > 3") == [n1, n2]
    assert query(f"{mine} AND score.double_value < 2.0") == [n0, n1]
    assert query(f"{mine} AND (team = 'b' OR priority.int_value >= 9)") == [n1, n2]
    assert query(f"{mine} AND team != 'a'") == [n1]
    with pytest.raises(mr_exceptions.BadRequestException):
        query("name = = 'x'")
