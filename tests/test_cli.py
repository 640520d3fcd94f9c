"""The `archive` command as a newcomer meets it: the demo twice, and clear setup errors."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cli import main as cli_main
from devservices import postgres
from devservices.s3 import free_port
from ocr import engine
from tests.conftest import REPO, SAMPLE_BATCH, searchable_tempdir

ARCHIVE = [sys.executable, "-m", "cli.main"]


@pytest.fixture
def demo_env():
    home = searchable_tempdir("archive-demo-home-")
    shutil.copy(REPO / "dagster_home" / "dagster.yaml", home / "dagster.yaml")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARCHIVE_")}
    env.update(DAGSTER_HOME=str(home), ARCHIVE_PG_PORT=str(free_port()))
    yield env
    subprocess.run([*ARCHIVE, "services", "stop"], env=env, cwd=REPO, capture_output=True)
    shutil.rmtree(home, ignore_errors=True)


def _summary_numbers(out: str) -> dict[str, str]:
    rows = re.search(r"PostgreSQL 行数\s+(.*)", out).group(1)
    objects = re.search(r"objects / 对象\s+(.*) \(", out).group(1)
    return dict(re.findall(r"(\S+) (\d+)", rows + ", " + objects))


def test_demo_twice_processes_nothing_twice(demo_env):
    first = subprocess.run([*ARCHIVE, "demo"], env=demo_env, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "演示完成 / demo finished" in first.stdout
    assert "9 pages OCR'd now" in first.stdout
    assert re.search(r"CER / 字符错误率\s+\d+\.\d+% over 9 pages", first.stdout)
    # the demo's file goes to a second agency, which fetches, verifies, receipts, imports and finds it
    assert re.search(r"transfer / 转递\s+GZ2026-0070001 \S+: 520000 → 440000 .*, received \(now\)", first.stdout)
    assert first.stdout.count("finds it") == 2 and "request → imported" in first.stdout
    second = subprocess.run([*ARCHIVE, "demo"], env=demo_env, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "0 pages OCR'd now, 9 scans from cache" in second.stdout
    assert _summary_numbers(second.stdout) == _summary_numbers(first.stdout)
    counts = _summary_numbers(first.stdout)
    assert counts["pages"] == "9" and counts["transfers"] == "1"
    # 10 originals, 9 OCR results, 9 PDFs, the transfer's package and record; 10 inventories (one
    # of each file, one of the transferred file at each of its 4 later steps, and one of each
    # file once its objects had their second copy, on the demo's replica)
    assert counts["pa-archive"] == "40"
    assert "received (in an earlier demo run" in second.stdout
    # the demo stopped the PostgreSQL it started, and its runs are in Dagster's PostgreSQL storage
    status = subprocess.run([*ARCHIVE, "services", "status"], env=demo_env, cwd=REPO, capture_output=True, text=True)
    assert "stopped" in status.stdout
    assert not list(Path(demo_env["DAGSTER_HOME"]).rglob("*.db"))  # no SQLite storage anywhere


def test_unreachable_s3_endpoint_is_one_clear_sentence(demo_env):
    env = {**demo_env, "ARCHIVE_S3_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}"}
    r = subprocess.run([*ARCHIVE, "run", str(SAMPLE_BATCH)], env=env, cwd=REPO, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 2
    assert "S3 endpoint http://127.0.0.1:" in r.stderr and "unreachable" in r.stderr
    assert "Traceback" not in r.stderr


def test_run_summaries_state_the_batch_truth_and_known_states_are_exit_statuses(demo_env, tmp_path):
    """`archive run` says what went on and what was refused; a batch where nothing can go on is
    exit 4 and one sentence; an unknown batch or file is exit 1; never a traceback."""
    import zipfile

    def archive(*args: str) -> subprocess.CompletedProcess:
        r = subprocess.run([*ARCHIVE, *args], env=demo_env, cwd=REPO, capture_output=True, text=True, timeout=600)
        assert "Traceback" not in r.stderr, r.stderr[-3000:]
        return r

    pages_only = tmp_path / "GZ2026-S008"
    shutil.copytree(SAMPLE_BATCH / "pages", pages_only / "pages")  # no manifest: nothing can go on
    refused = archive("run", str(pages_only))
    assert refused.returncode == 4, refused.stderr[-2000:]
    assert "0 materials going on" in refused.stdout and "演示完成" not in refused.stdout
    assert refused.stderr.count("\n") == 1 and "nothing in batch GZ2026-S008-" in refused.stderr
    assert "manifest.csv" in refused.stderr

    zipped = tmp_path / "GZ2026-S007.zip"
    with zipfile.ZipFile(zipped, "w") as zf:  # as `zip -r GZ2026-S007.zip GZ2026-S007` lays it out
        for path in sorted(SAMPLE_BATCH.rglob("*")):
            zf.write(path, f"GZ2026-S007/{path.relative_to(SAMPLE_BATCH).as_posix()}")
    done = archive("run", str(zipped))
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.startswith("批次处理完成 / batch processed") and "演示完成" not in done.stdout
    assert "9 materials going on (3 personnel files), 0 items refused" in done.stdout

    history = archive("history", "GZ2026-0070001")
    assert history.returncode == 0 and "1-1" in history.stdout and "现行 / current" in history.stdout
    unknown = archive("report", "GZ-no-such-batch")
    assert unknown.returncode == 1 and unknown.stderr.startswith("未找到 / not found: ")
    assert archive("history", "GZ-NO-SUCH").returncode == 1


def test_missing_postgres_binaries_named(monkeypatch, capsys):
    monkeypatch.setattr(postgres.glob, "glob", lambda pattern: [])
    monkeypatch.setattr(postgres.shutil, "which", lambda name: None)
    assert cli_main.main(["services", "start"]) == 2
    err = capsys.readouterr().err
    assert "PostgreSQL server binaries (initdb, pg_ctl) not found" in err and "apt-get install postgresql" in err


def test_missing_chinese_language_data_named(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("TESSDATA_PREFIX", str(tmp_path))
    monkeypatch.setattr(engine, "TESSDATA_CANDIDATES", ())
    assert cli_main.main(["ocr", str(next(SAMPLE_BATCH.glob("pages/*.jpg")))]) == 2
    err = capsys.readouterr().err
    assert "chi_sim" in err and "tesseract-ocr-chi-sim" in err


def test_missing_tesseract_binary_named(monkeypatch, capsys):
    from devservices import preflight

    monkeypatch.setattr(preflight.shutil, "which", lambda name: None)
    assert cli_main.main(["demo"]) == 2
    assert "tesseract is not installed" in capsys.readouterr().err


def test_ocr_cli_json(capsys):
    import json

    page = sorted(SAMPLE_BATCH.glob("pages/*.jpg"))[0]
    assert cli_main.main(["ocr", str(page), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [set(o) for o in out] == [{"file", "page", "text", "confidence", "seconds"}]
    assert "学习和工作经历" in out[0]["text"]


def test_bad_input_path(capsys):
    assert cli_main.main(["ocr", "/no/such/page.jpg"]) == 1
    assert "/no/such/page.jpg" in capsys.readouterr().err


def test_dagster_definitions_validate():
    r = subprocess.run([str(REPO / ".venv" / "bin" / "dagster") if (REPO / ".venv").exists() else "dagster",
                        "definitions", "validate", "-m", "pipeline.definitions"],
                       cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "Validation successful" in r.stderr + r.stdout


def test_ui_serves_the_instance_and_stops_by_pid(demo_env):
    import json
    import signal
    import time
    import urllib.request

    port = free_port()
    proc = subprocess.Popen([*ARCHIVE, "ui", "--port", str(port)], env=demo_env, cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=2)
                break
            except OSError:
                assert time.monotonic() < deadline and proc.poll() is None, "UI did not come up"
                time.sleep(1)
        query = json.dumps({"query": "{ assetNodes { assetKey { path } } }"}).encode()
        req = urllib.request.Request(f"http://127.0.0.1:{port}/graphql", query, {"Content-Type": "application/json"})
        nodes = json.load(urllib.request.urlopen(req, timeout=30))["data"]["assetNodes"]
        assert sorted(n["assetKey"]["path"][0] for n in nodes) == [
            "archive", "fixity_audit", "index", "intake", "inventories", "ocr", "platform_deliveries", "replication",
            "transfer_package", "transfer_receipts"]
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(90) == 0
    status = subprocess.run([*ARCHIVE, "services", "status"], env=demo_env, cwd=REPO, capture_output=True, text=True)
    assert "stopped" in status.stdout
