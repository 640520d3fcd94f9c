"""A Celery worker's sign of life, and what the run worker does with a step whose worker is gone
(pipeline/celery_liveness.py), against a real Redis. The whole path, a worker killed in an OCR
unit of a real run: tests/test_executors.py."""

import time
import uuid
from collections.abc import Iterator

import pytest
import redis

from devservices.redis import LocalRedis
from devservices.s3 import free_port
from pipeline import celery_liveness
from pipeline.celery_liveness import Heartbeat, StepWorkerLost, WatchedStep, worker_alive, worker_token


@pytest.fixture(scope="module")
def client() -> Iterator[redis.Redis]:
    server = LocalRedis(free_port())
    server.start()
    try:
        yield redis.Redis.from_url(server.url)
    finally:
        server.stop()


@pytest.fixture(autouse=True)
def _quick(monkeypatch):
    monkeypatch.setattr(celery_liveness, "HEARTBEAT_SECONDS", 0.1)
    monkeypatch.setattr(celery_liveness, "HEARTBEAT_TTL", 1)
    monkeypatch.setattr(celery_liveness, "CHECK_SECONDS", 0.0)


class _Backend:
    def __init__(self, client: redis.Redis) -> None:
        self.client = client


class _Result:
    """The part of Celery's AsyncResult that dagster-celery's loop and WatchedStep use; started
    by `worker` (its heartbeat records the step, as the worker's task_prerun does), or queued."""

    def __init__(self, client: redis.Redis, worker: Heartbeat | None) -> None:
        self.backend, self.id = _Backend(client), str(uuid.uuid4())
        if worker is not None:
            worker.record_step(self.id)
        self.done = self.revoked = False

    def ready(self) -> bool:
        return self.done

    def get(self) -> list[str]:
        return ["events of " + self.id]

    def revoke(self) -> None:
        self.revoked = True


def test_a_beating_worker_stays_alive_a_silent_one_expires_and_a_stopped_one_is_gone_at_once(client):
    beating = Heartbeat(client, worker_token("beating@host"))
    beating.start()
    silent = Heartbeat(client, worker_token("silent@host"))
    silent.beat()  # one beat, then nothing, as a worker killed with SIGKILL
    time.sleep(1.5)  # longer than the TTL
    assert worker_alive(client, beating.worker)
    assert not worker_alive(client, silent.worker)
    beating.stop()
    assert not worker_alive(client, beating.worker)
    assert not worker_alive(client, worker_token("never-started@host"))


def test_a_step_on_a_live_worker_or_still_queued_is_waited_on(client):
    beat = Heartbeat(client, worker_token("live@host"))
    beat.start()
    try:
        sent: list[_Result] = []
        for result in (_Result(client, beat), _Result(client, None)):
            step = WatchedStep(lambda r=result: sent.append(r) or r, "ocr.unit", pytest.fail)
            for _ in range(5):
                assert not step.ready()
            result.done = True
            assert step.ready() and step.get() == result.get()
        assert len(sent) == 2  # each sent once
    finally:
        beat.stop()


def test_a_step_whose_worker_died_is_sent_again_then_fails_naming_every_lost_worker(client):
    sent: list[_Result] = []
    warnings: list[str] = []

    def send() -> _Result:  # started by a worker that never beats again
        sent.append(_Result(client, Heartbeat(client, worker_token(f"dead{len(sent)}@host"))))
        return sent[-1]

    step = WatchedStep(send, "ocr.ocr_unit_step[unit_00001]", warnings.append)
    for _ in range(celery_liveness.RESENDS):
        assert not step.ready()
    assert len(sent) == 1 + celery_liveness.RESENDS
    assert step.ready()  # the last sending's worker died too: the step fails
    with pytest.raises(StepWorkerLost) as failed:
        step.get()
    assert failed.value.item == "ocr.ocr_unit_step[unit_00001]"
    assert "dead0@host, dead1@host, dead2@host" in failed.value.message_en
    assert len(warnings) == 1 + celery_liveness.RESENDS and "sending the step again (1 of 2)" in warnings[0]
    step.revoke()
    assert sent[-1].revoked


def test_a_worker_restarted_under_its_name_does_not_keep_its_predecessors_step_alive(client):
    """A container restarted in its pod is a worker of the same node name: its beats are its own."""
    killed = Heartbeat(client, worker_token("pod-7@host"))
    killed.beat()
    sent: list[_Result] = []
    step = WatchedStep(lambda: sent.append(_Result(client, killed if not sent else None)) or sent[-1],
                       "index", lambda _: None)
    time.sleep(1.2)  # the killed worker's key expires
    restarted = Heartbeat(client, worker_token("pod-7@host"))
    restarted.start()
    try:
        assert not step.ready() and len(sent) == 2  # sent again although pod-7@host beats
    finally:
        restarted.stop()


def test_a_stopping_run_sends_nothing_more(client):
    sent: list[_Result] = []
    step = WatchedStep(lambda: sent.append(_Result(client, Heartbeat(client, worker_token("dead@host")))) or sent[-1],
                       "index", lambda _: None)
    step.revoke()  # the run was interrupted: the loop revokes, then waits for the steps to end
    assert not step.ready() and len(sent) == 1 and sent[0].revoked


def test_a_step_that_ended_as_its_worker_stopped_is_not_sent_again(client):
    result = _Result(client, Heartbeat(client, worker_token("stopped@host")))
    checks = iter([False, True])  # still running when first asked, ended by the time its worker is found gone
    result.ready = lambda: next(checks, True)
    sent: list[_Result] = []
    step = WatchedStep(lambda: sent.append(result) or result, "index", pytest.fail)
    assert not step.ready()
    assert step.ready() and len(sent) == 1
