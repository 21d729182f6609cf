"""Compatibility tests: the upstream client's experiment-tracking API against our server.

Run through tests/compat/run.sh (it exports MR_URL and MR_COMPAT_PREFIX). Only clients that
ship the experiment API (`ModelRegistry.start_experiment_run`, model_registry/_experiments.py)
are tested; for others (0.3.18 has none) every test here is skipped.

Covered: experiments (create, get by name/id, list with the client's pager, archive), runs
started with the `start_experiment_run` context manager (new runs, re-opened runs by id,
nested runs), logging parameters, metrics over several steps and datasets, reading a run's
logs back, the metric history (generated API: per run, across runs, `name` and `stepIds`
filters, paging), comparing runs to pick the best one, and 404/409 paths.
"""

from __future__ import annotations

import inspect
import os
import re
import time
import uuid
import warnings
from urllib.parse import urlparse

import pytest

import model_registry
from model_registry import ModelRegistry
from mr_openapi import exceptions as mr_exceptions

CLIENT_VERSION = tuple(int(p) for p in re.findall(r"\d+", model_registry.__version__)[:3])
EXPECTED_PREFIX = "/api/model_registry/v1" if CLIENT_VERSION >= (0, 3, 12) else "/api/model_registry/v1alpha3"
HAS_EXPERIMENTS = hasattr(ModelRegistry, "start_experiment_run")

if HAS_EXPERIMENTS:
    from model_registry.types.artifacts import DataSet, Metric, Parameter, ParameterType
    from model_registry.types.experiments import Experiment, ExperimentRun
    from mr_openapi import ExperimentState

pytestmark = pytest.mark.skipif(
    not HAS_EXPERIMENTS,
    reason=f"model-registry {model_registry.__version__} has no experiment API (start_experiment_run)",
)

AUTHOR = "compat-tester"
ID_RE = re.compile(r"^[1-9][0-9]{0,8}$")
PREFIX = os.environ.get("MR_COMPAT_PREFIX") or f"compat-{uuid.uuid4().hex[:8]}"
PAGER_CAP = 1000


# --------------------------------------------------------------------------- helpers


def uniq(kind: str) -> str:
    return f"{PREFIX}-{kind}-{uuid.uuid4().hex[:8]}"


def connect() -> ModelRegistry:
    url = os.environ.get("MR_URL")
    if not url:
        pytest.fail("MR_URL is not set (e.g. MR_URL=http://127.0.0.1:8080); use tests/compat/run.sh")
    parsed = urlparse(url)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="User access token is missing")
        return ModelRegistry(
            f"{parsed.scheme}://{parsed.hostname}",
            port=parsed.port,
            author=AUTHOR,
            is_secure=False,
            # Set by run.sh when the server runs with MR_AUTH=jwt.
            user_token=os.environ.get("MR_USER_TOKEN") or None,
        )


@pytest.fixture
def registry() -> ModelRegistry:
    # One client per test: the client keeps the "active run" in the instance, so a test
    # failing inside a `with start_experiment_run(...)` block must not leak it.
    return connect()


def assert_id(value) -> str:
    assert isinstance(value, str) and ID_RE.match(value), f"id should be a decimal string, got {value!r}"
    return value


def drain(pager) -> list:
    """Iterate a client Pager to the end; fail on repeats (end of list not detected)."""
    out, seen = [], set()
    for item in pager:
        assert item.id not in seen, f"pager yielded id {item.id} twice: the last page must answer nextPageToken ''"
        seen.add(item.id)
        out.append(item)
        assert len(out) <= PAGER_CAP, "pager keeps yielding items"
    return out


def run_now(registry: ModelRegistry, coro_fn):
    """Run `coro_fn(client)` with the client's generated API client."""

    async def go():
        async with registry._api.get_client() as client:
            return await coro_fn(client)

    return registry.async_runner(go())


def metric_history(registry: ModelRegistry, run_id: str | None = None, **kwargs) -> list:
    """Every page of a run's (or all runs') metric history, following nextPageToken."""
    out, token, pages = [], None, 0
    while True:
        args = dict(kwargs)
        if token:
            args["next_page_token"] = token
        if run_id is None:
            page = run_now(registry, lambda c: c.get_experiment_runs_metric_history(**args))
        else:
            page = run_now(registry, lambda c: c.get_experiment_run_metric_history(run_id, **args))
        out.extend(page.items or [])
        pages += 1
        assert pages <= PAGER_CAP, "metric history pages never end"
        if not page.next_page_token:
            return out
        assert page.next_page_token != token, "the same token twice: the client would loop"
        token = page.next_page_token


def log_steps(registry: ModelRegistry, experiment: str, run_id: str, key: str, values: list[float]) -> None:
    """Log `key` at steps 1..n the way a training loop does with this client: one
    `start_experiment_run(run_id=...)` block per step (the context manager keeps only the
    last value of a key per block, and sends it on exit)."""
    for step, value in enumerate(values, start=1):
        with registry.start_experiment_run(experiment_name=experiment, run_id=run_id) as run:
            assert run.info.id == run_id
            run.log_metric(key, value, step=step)
        time.sleep(0.002)


def logs_by_name(registry: ModelRegistry, run_id: str) -> dict:
    logs = drain(registry.get_experiment_run_logs(run_id=run_id))
    by_name = {}
    for log in logs:
        assert log.name not in by_name, f"two logs named {log.name!r} in run {run_id}: {logs}"
        by_name[log.name] = log
    return by_name


# --------------------------------------------------------------------------- tests


def test_experiment_api_uses_expected_prefix():
    import mr_openapi.api.model_registry_service_api as api_mod

    src = inspect.getsource(api_mod)
    for path in ("/experiments", "/experiment_runs/{experimentrunId}/artifacts", "/experiment_runs/metric_history"):
        assert f'"{EXPECTED_PREFIX}{path}"' in src, f"client does not call {EXPECTED_PREFIX}{path}"


def test_create_get_list_and_archive_experiments(registry):
    base = uniq("exp")
    names = [f"{base}-{i}" for i in range(5)]
    created = []
    for n in names:
        e = registry.create_experiment(n)
        assert isinstance(e, Experiment)
        assert_id(e.id)
        assert e.name == n
        assert e.state == ExperimentState.LIVE
        assert e.create_time_since_epoch and e.create_time_since_epoch.isdigit()
        created.append(e)
        time.sleep(0.002)
    ids = [e.id for e in created]
    assert ids == sorted(ids, key=int), "ids increase with creation"

    # create_experiment on an existing name finds it and updates it (no duplicate).
    again = registry.create_experiment(names[0])
    assert again.id == created[0].id

    api = registry._api
    by_name = registry.async_runner(api.get_experiment_by_name(names[1]))
    assert by_name is not None and by_name.id == created[1].id
    by_id = registry.async_runner(api.get_experiment_by_id(created[2].id))
    assert by_id is not None and by_id.id == created[2].id and by_id.name == names[2]
    assert registry.async_runner(api.get_experiment_by_name(uniq("absent"))) is None
    assert registry.async_runner(api.get_experiment_by_id("999999999")) is None

    # The client's pager over pages of 2, both directions.
    listed = [e for e in drain(registry.get_experiments().page_size(2)) if e.name.startswith(base)]
    assert [e.id for e in listed] == ids
    newest_first = [
        e for e in drain(registry.get_experiments().order_by_creation_time().descending().page_size(2))
        if e.name.startswith(base)
    ]
    assert [e.id for e in newest_first] == ids[::-1]

    # Archive through the client's upsert (PATCH with the update schema).
    exp = created[3]
    exp.state = ExperimentState.ARCHIVED
    exp.description = "archived by compat test"
    archived = registry.async_runner(api.upsert_experiment(exp))
    assert archived.id == exp.id
    assert archived.state == ExperimentState.ARCHIVED
    assert archived.description == "archived by compat test"
    assert int(archived.last_update_time_since_epoch) > int(created[3].last_update_time_since_epoch)
    assert registry.async_runner(api.get_experiment_by_name(names[3])).state == ExperimentState.ARCHIVED


def test_run_logs_params_metrics_and_datasets(registry):
    exp_name = uniq("exp-run")
    with registry.start_experiment_run(experiment_name=exp_name) as run:
        run.log_param("lr", 0.01)
        run.log_param("optimizer", "adam")
        run.log_param("epochs", 10)
        run.log_param("augment", True)
        run.log_metric("accuracy", 0.91, step=3, description="val accuracy")
        run.log_dataset(
            name="train",
            uri="s3://compat-data/mnist/train.parquet",
            source_type="s3",
            source="s3://compat-data/mnist",
            schema='{"x": "image", "y": "int"}',
            profile='{"rows": 60000}',
            description="training split",
        )
    info = run.info
    assert_id(info.id)
    assert_id(info.experiment_id)
    exp = registry.async_runner(registry._api.get_experiment_by_name(exp_name))
    assert exp is not None and exp.id == info.experiment_id, "start_experiment_run creates the experiment"

    # What the context manager got back from the server on exit.
    lr = run.get_log("params", "lr")
    assert isinstance(lr, Parameter)
    assert_id(lr.id)
    assert lr.value == 0.01 and lr.parameter_type == ParameterType.NUMBER
    assert lr.experiment_id == info.experiment_id and lr.experiment_run_id == info.id
    acc = run.get_log("metrics", "accuracy")
    assert isinstance(acc, Metric)
    assert acc.value == 0.91 and acc.step == 3 and acc.description == "val accuracy"
    assert acc.timestamp and acc.timestamp.isdigit()
    ds = run.get_log("datasets", "train")
    assert isinstance(ds, DataSet)
    assert ds.uri == "s3://compat-data/mnist/train.parquet"
    assert ds.experiment_run_id == info.id

    # The run, read back.
    got = registry.get_experiment_run(info.id)
    assert isinstance(got, ExperimentRun)
    assert got.id == info.id and got.name == info.name and got.experiment_id == info.experiment_id
    assert registry.get_experiment_run("999999999") is None

    runs = drain(registry.get_experiment_runs(experiment_name=exp_name))
    assert [r.id for r in runs] == [info.id]
    assert [r.id for r in drain(registry.get_experiment_runs(experiment_id=info.experiment_id))] == [info.id]

    # Its logs, three ways, and with a small page size.
    logs = logs_by_name(registry, info.id)
    assert set(logs) == {"lr", "optimizer", "epochs", "augment", "accuracy", "train"}
    assert isinstance(logs["optimizer"], Parameter) and logs["optimizer"].value == "adam"
    assert logs["optimizer"].parameter_type == ParameterType.STRING
    assert logs["epochs"].value == 10.0 and logs["epochs"].parameter_type == ParameterType.NUMBER
    assert logs["augment"].value is True and logs["augment"].parameter_type == ParameterType.BOOLEAN
    assert isinstance(logs["accuracy"], Metric) and logs["accuracy"].value == 0.91
    assert isinstance(logs["train"], DataSet)
    assert logs["train"].schema == '{"x": "image", "y": "int"}'
    assert logs["train"].profile == '{"rows": 60000}'
    for log in logs.values():
        assert log.experiment_id == info.experiment_id and log.experiment_run_id == info.id
    ids = sorted(log.id for log in logs.values())
    by_name_exp = drain(registry.get_experiment_run_logs(run_name=info.name, experiment_name=exp_name))
    assert sorted(log.id for log in by_name_exp) == ids
    by_name_id = drain(registry.get_experiment_run_logs(run_name=info.name, experiment_id=info.experiment_id))
    assert sorted(log.id for log in by_name_id) == ids
    paged = drain(registry.get_experiment_run_logs(run_id=info.id).page_size(2))
    assert sorted(log.id for log in paged) == ids


def test_metric_logged_over_steps_and_its_history(registry):
    exp_name = uniq("exp-hist")
    with registry.start_experiment_run(experiment_name=exp_name) as run:
        run.log_param("lr", 0.1)
    run_id = run.info.id
    losses = [0.9, 0.7, 0.5, 0.4, 0.35]
    before = int(time.time() * 1000)
    log_steps(registry, exp_name, run_id, "loss", losses)
    after = int(time.time() * 1000)

    # The run's metric is the last value logged.
    logs = logs_by_name(registry, run_id)
    assert set(logs) == {"lr", "loss"}, "one metric artifact per name, however many steps"
    loss = logs["loss"]
    assert isinstance(loss, Metric)
    assert loss.value == 0.35 and loss.step == 5

    # Every value is in the metric history, with its step and timestamp.
    hist = sorted(metric_history(registry, run_id, name="loss"), key=lambda m: m.step)
    assert [m.step for m in hist] == [1, 2, 3, 4, 5]
    assert [m.value for m in hist] == losses
    stamps = [int(m.timestamp) for m in hist]
    assert stamps == sorted(stamps), f"timestamps follow the steps: {stamps}"
    assert before - 1000 <= stamps[0] and stamps[-1] <= after + 1000, f"{stamps} not within [{before}, {after}]"
    for m in hist:
        assert m.name == "loss" and m.artifact_type == "metric"
        assert m.experiment_run_id == run_id and m.experiment_id == run.info.experiment_id

    assert [m.step for m in sorted(metric_history(registry, run_id, step_ids="2,4"), key=lambda m: m.step)] == [2, 4]
    two_four = metric_history(registry, run_id, name="loss", step_ids="2,4")
    assert sorted(m.value for m in two_four) == [0.4, 0.7]
    assert metric_history(registry, run_id, name="accuracy") == []
    # Pages of 2 still give all five, in step order.
    paged = metric_history(registry, run_id, name="loss", page_size="2")
    assert sorted(m.id for m in paged) == sorted(m.id for m in hist)

    # Across runs: another run's loss shows up too, filtered by name and step.
    with registry.start_experiment_run(experiment_name=exp_name) as other:
        other.log_metric("loss", 0.2, step=1)
    mine = {run_id, other.info.id}
    across = [m for m in metric_history(registry, None, name="loss", step_ids="1") if m.experiment_run_id in mine]
    assert {m.experiment_run_id: m.value for m in across} == {run_id: 0.9, other.info.id: 0.2}
    everything = [m for m in metric_history(registry, None, page_size="3") if m.experiment_run_id in mine]
    assert len(everything) == 6

    with pytest.raises(mr_exceptions.NotFoundException):
        run_now(registry, lambda c: c.get_experiment_run_metric_history("999999999"))


def test_compare_runs_and_pick_the_best(registry):
    exp_name = uniq("exp-best")
    trials = {"slow": (0.1, [0.60, 0.70, 0.78]), "good": (0.01, [0.70, 0.85, 0.93]), "peaky": (0.05, [0.80, 0.95, 0.88])}
    run_ids = {}
    for label, (lr, accuracies) in trials.items():
        with registry.start_experiment_run(experiment_name=exp_name, run_description=label) as run:
            run.log_param("lr", lr)
            run.log_param("label", label)
        run_ids[label] = run.info.id
        log_steps(registry, exp_name, run.info.id, "accuracy", accuracies)

    # The data scientist's way: every run of the experiment, its final accuracy.
    runs = drain(registry.get_experiment_runs(experiment_name=exp_name))
    assert sorted(r.id for r in runs) == sorted(run_ids.values())
    final = {}
    for r in runs:
        logs = logs_by_name(registry, r.id)
        final[logs["label"].value] = (logs["accuracy"].value, logs["lr"].value, r)
    best_label = max(final, key=lambda k: final[k][0])
    assert best_label == "good", final
    best_acc, best_lr, best_run = final[best_label]
    assert (best_acc, best_lr, best_run.id) == (0.93, 0.01, run_ids["good"])
    assert best_run.description == "good"

    # The metric history tells the whole story: the peak at step 2 was another run.
    history = [m for m in metric_history(registry, None, name="accuracy") if m.experiment_run_id in run_ids.values()]
    assert len(history) == 9
    peak = max(history, key=lambda m: m.value)
    assert (peak.experiment_run_id, peak.step, peak.value) == (run_ids["peaky"], 2, 0.95)
    last_step = [m for m in history if m.step == 3]
    assert max(last_step, key=lambda m: m.value).experiment_run_id == run_ids["good"]


def test_nested_run_records_its_parent(registry):
    exp_name = uniq("exp-nested")
    with registry.start_experiment_run(experiment_name=exp_name) as parent:
        with pytest.raises(ValueError, match="already active"):
            registry.start_experiment_run(experiment_name=exp_name)
        with registry.start_experiment_run(nested=True) as child:
            child.log_metric("fold_accuracy", 0.8, step=1)
    assert child.info.experiment_id == parent.info.experiment_id
    assert child.info.id != parent.info.id
    got = registry.get_experiment_run(child.info.id)
    assert got.custom_properties == {"kubeflow.parent_run_id": parent.info.id}
    runs = drain(registry.get_experiment_runs(experiment_id=parent.info.experiment_id))
    assert sorted((r.id for r in runs), key=int) == sorted([parent.info.id, child.info.id], key=int)
    assert set(logs_by_name(registry, child.info.id)) == {"fold_accuracy"}
    assert logs_by_name(registry, parent.info.id) == {}


def test_reopened_run_upserts_params_by_name(registry):
    exp_name = uniq("exp-upsert")
    with registry.start_experiment_run(experiment_name=exp_name) as run:
        run.log_param("lr", 0.1)
    first = run.get_log("params", "lr")
    with registry.start_experiment_run(experiment_name=exp_name, run_id=run.info.id) as again:
        again.log_param("lr", 0.05)
    second = again.get_log("params", "lr")
    assert second.id == first.id, "a parameter logged again under its name updates it"
    assert second.value == 0.05
    logs = logs_by_name(registry, run.info.id)
    assert set(logs) == {"lr"} and logs["lr"].value == 0.05


def test_generated_api_conflicts_and_not_found(registry):
    api = registry._api
    exp = registry.create_experiment(uniq("exp-conflict"))

    async def create_exp(client):
        return await client.create_experiment(Experiment(name=exp.name).create())

    with pytest.raises(mr_exceptions.ConflictException):
        run_now(registry, create_exp)

    run = registry.async_runner(api.upsert_experiment_run(ExperimentRun(name="trial", experiment_id=exp.id)))
    assert_id(run.id)
    assert run.experiment_id == exp.id
    with pytest.raises(mr_exceptions.ConflictException):
        registry.async_runner(api.upsert_experiment_run(ExperimentRun(name="trial", experiment_id=exp.id)))
    other = registry.create_experiment(uniq("exp-conflict-other"))
    elsewhere = registry.async_runner(api.upsert_experiment_run(ExperimentRun(name="trial", experiment_id=other.id)))
    assert elsewhere.id != run.id, "run names are unique within their experiment only"

    with pytest.raises(mr_exceptions.NotFoundException):
        registry.async_runner(api.upsert_experiment_run(ExperimentRun(name="orphan", experiment_id="999999999")))
    assert registry.async_runner(api.get_experiment_run_by_id("999999999")) is None
    assert registry.async_runner(api.get_experiment_runs_by_experiment_id("999999999")) == []
    assert registry.async_runner(api.get_artifacts_by_experiment_run_params(run_id="999999999")) == []
    with pytest.raises(mr_exceptions.NotFoundException):
        registry.async_runner(
            api.upsert_experiment_run_artifact("999999999", Metric(name="loss", value=1.0, step=1))
        )
    # A parameter and a metric logged directly through the generated API.
    p = registry.async_runner(
        api.upsert_experiment_run_artifact(run.id, Parameter(name="lr", value=0.1, parameter_type=ParameterType.NUMBER))
    )
    assert isinstance(p, Parameter) and p.experiment_run_id == run.id
    m = registry.async_runner(api.upsert_experiment_run_artifact(run.id, Metric(name="loss", value=0.5, step=1)))
    assert isinstance(m, Metric) and m.value == 0.5 and m.experiment_id == exp.id
