"""One path from hand-in to run: whoever asks (the inbox sensor, `archive run`, the web's own
runner), two callers at the same moment start one run of a batch."""

import threading

import dagster as dg
import pytest

from errors import NotReady
from pipeline.definitions import batch_job
from pipeline.hand_in import hand_in_job
from pipeline.launch import claim_batch_run
from pipeline.runner import run_batch
from pipeline.sensors import make_inbox_sensor
from stages.submit import submit_path
from tests.conftest import SAMPLE_BATCH, pipeline_resources


@pytest.fixture
def instance(tmp_path):
    with dg.DagsterInstance.local_temp(str(tmp_path)) as inst:
        yield inst


def _resources(services) -> dict:
    return pipeline_resources(services)


def test_callers_at_the_same_moment_get_one_claim(services, instance):
    batch = submit_path(SAMPLE_BATCH, services).batch_id
    start, results = threading.Barrier(6), {}

    def ask(i: int) -> None:
        start.wait()
        results[i] = claim_batch_run(services, instance, batch, f"caller-{i}")

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [i for i, holder in results.items() if holder is None]
    assert len(winners) == 1, results
    assert {h.run_id for h in results.values() if h} == {f"caller-{winners[0]}"}  # the others name the winner


def test_the_sensor_and_the_webs_runner_at_once_start_one_run(services, instance, monkeypatch, tmp_path):
    resources = _resources(services)
    sensor = make_inbox_sensor(batch_job, hand_in_job)
    monkeypatch.setenv("ARCHIVE_INBOX", str(tmp_path / "inbox"))  # empty: batches come from uploads

    def tick() -> dg.SensorResult:
        # the sensor's own resource only: a test's sensor context opens no IO managers
        return sensor(dg.build_sensor_context(instance=instance, resources={"services": resources["services"]}))

    # the sensor first: its run is being made, so the web's runner (run_batch) refuses
    first = submit_path(SAMPLE_BATCH, services).batch_id
    assert [r.partition_key for r in tick().run_requests] == [first]
    with pytest.raises(NotReady) as refused:
        run_batch(first, resources, instance)
    assert refused.value.exit_code == 3 and "being started" in refused.value.message_en

    # the web's runner first: the sensor asks for no run of the batch, then or after
    second = submit_path(SAMPLE_BATCH / "pages", services, name="pages-only").batch_id
    result = run_batch(second, resources, instance)
    assert result.success
    assert second not in [r.partition_key for r in tick().run_requests]
    assert len(instance.get_runs(filters=dg.RunsFilter(tags={"batch": second}))) == 1


def test_a_claim_holds_until_its_run_has_ended(services, instance):
    batch = submit_path(SAMPLE_BATCH, services).batch_id
    assert claim_batch_run(services, instance, batch, "run-1") is None
    assert claim_batch_run(services, instance, batch, "run-2").run_id == "run-1"  # run-1 not made yet
    instance.add_run(dg.DagsterRun(job_name="process_batch", run_id="run-1", status=dg.DagsterRunStatus.SUCCESS,
                                   tags={"batch": batch}))
    assert claim_batch_run(services, instance, batch, "run-2") is None  # made and ended: spent


def test_a_sensor_run_made_but_never_launched_is_asked_for_again(services, instance, monkeypatch, tmp_path):
    monkeypatch.setenv("ARCHIVE_INBOX", str(tmp_path / "inbox"))
    batch = submit_path(SAMPLE_BATCH, services).batch_id
    sensor = make_inbox_sensor(batch_job, hand_in_job)
    context = dg.build_sensor_context(instance=instance, resources={"services": _resources(services)["services"]})
    assert [r.run_key for r in sensor(context).run_requests] == [batch]
    # the daemon made the run, then stopped before launching it
    instance.add_run(dg.DagsterRun(job_name="process_batch", status=dg.DagsterRunStatus.NOT_STARTED,
                                   tags={"batch": batch, "dagster/run_key": batch}))
    assert [r.run_key for r in sensor(context).run_requests] == [batch]  # Dagster launches that same run
