"""`archive upload`, `search`, `report` and `serve` run as a user runs them (the installed `archive`
in a subprocess) against the test PostgreSQL and S3: what each prints and its exit status, for
success and for each known failure, never a traceback; and an upload to S3 cut off part way that
the same command resumes without storing anything twice."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest

from catalog import idnumber
from devservices.s3 import free_port
from search.query import RANK_WINDOW
from search.terms import page_codes, shard_of, text_codes
from stages.index import Chunk, begin_load, load_chunk
from storage.db import Database
from tests.conftest import REPO, SAMPLE_BATCH, searchable_tempdir
from tests.faultproxy import FaultProxy

ARCHIVE = REPO / ".venv" / "bin" / "archive"
LABEL = {1: "输入错误 / bad input: ", 2: "配置错误 / setup problem: "}
NOT_FOUND = "未找到 / not found: "


class Cli:
    """The `archive` command with the environment a user of this installation would have."""

    def __init__(self, database_url: str, s3_url: str, home: Path) -> None:
        suffix = uuid.uuid4().hex[:8]
        self.staging, self.archive = f"staging-{suffix}", f"archive-{suffix}"
        self.database_url, self.s3_url = database_url, s3_url
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("ARCHIVE_")}
        self.env.update(ARCHIVE_DATABASE_URL=database_url, ARCHIVE_S3_ENDPOINT_URL=s3_url,
                        ARCHIVE_STAGING_BUCKET=self.staging, ARCHIVE_BUCKET=self.archive, DAGSTER_HOME=str(home))

    def command(self, *args: str, **env: str) -> tuple[list[str], dict[str, str]]:
        exe = str(ARCHIVE) if ARCHIVE.exists() else shutil.which("archive")
        return [exe, *args], {**self.env, **env}

    def __call__(self, *args: str, timeout: float = 300, **env: str) -> subprocess.CompletedProcess:
        cmd, full_env = self.command(*args, **env)
        r = subprocess.run(cmd, env=full_env, cwd=REPO, capture_output=True, text=True, timeout=timeout)
        assert "Traceback" not in r.stderr, r.stderr[-3000:]
        return r


def refused(r: subprocess.CompletedProcess, code: int, *parts: str, label: str | None = None) -> str:
    """The known state's one sentence: the last line of stderr (a progress bar may come before it),
    with its label, `parts` in it, and the exit status `code`."""
    lines = [ln for ln in r.stderr.replace("\r", "\n").splitlines() if ln.strip()]
    assert r.returncode == code, (r.returncode, r.stderr[-2000:])
    assert lines and lines[-1].startswith(label or LABEL[code]), r.stderr[-2000:]
    assert sum(ln.startswith(tuple(LABEL.values()) + (NOT_FOUND,)) for ln in lines) == 1, r.stderr[-2000:]
    for part in parts:
        assert part in lines[-1], (part, lines[-1])
    return lines[-1]


@pytest.fixture
def cli(database_url, s3_url):
    home = searchable_tempdir("archive-cli-home-")
    yield Cli(database_url, s3_url, home)
    shutil.rmtree(home, ignore_errors=True)


def _s3(url: str):
    return boto3.client("s3", endpoint_url=url)


def _stored(cli: Cli, batch_id: str) -> dict[str, bytes]:
    """Each file of the batch as the S3 endpoint itself holds it (read straight from moto)."""
    with Database(cli.database_url).transaction() as cur:
        cur.execute("SELECT path, staging_key FROM batch_files WHERE batch_id = %s", (batch_id,))
        rows = cur.fetchall()
    s3 = _s3(cli.s3_url)
    return {r["path"]: s3.get_object(Bucket=cli.staging, Key=r["staging_key"])["Body"].read() for r in rows}


def _handed_in(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _batch_of(out: str) -> str:
    return out.split("batch ", 1)[1].split(",", 1)[0]


# -- upload -------------------------------------------------------------------------------------


def test_upload_registers_a_batch_once_and_refuses_what_is_no_batch(cli, tmp_path):
    first = cli("upload", str(SAMPLE_BATCH))
    assert first.returncode == 0, first.stderr[-2000:]
    assert first.stdout.startswith("已登记 / registered: batch GZ2026-S007-") and ", 10 files." in first.stdout
    batch_id = _batch_of(first.stdout)
    assert _stored(cli, batch_id) == _handed_in(SAMPLE_BATCH)  # byte for byte, as the endpoint holds them
    again = cli("upload", str(SAMPLE_BATCH))
    assert again.returncode == 0 and again.stdout.startswith(f"此前已交 / handed in before: batch {batch_id},")
    assert Database(cli.database_url).count("batches") == 1
    assert sum(1 for _ in _s3(cli.s3_url).list_objects_v2(Bucket=cli.staging)["Contents"]) == 10

    refused(cli("upload", str(tmp_path / "missing")), 1, "does not exist")
    (tmp_path / "notes.txt").write_text("not a batch")
    refused(cli("upload", str(tmp_path / "notes.txt")), 1, "neither a batch folder nor a zip")
    (tmp_path / "empty").mkdir()
    refused(cli("upload", str(tmp_path / "empty")), 1, "holds no files")


def test_upload_setup_problems_are_exit_2(cli):
    port = free_port()
    refused(cli("upload", str(SAMPLE_BATCH), ARCHIVE_S3_ENDPOINT_URL=f"http://127.0.0.1:{port}",
                ARCHIVE_S3_ATTEMPTS="1"), 2, f"S3 at http://127.0.0.1:{port}", "run again")
    refused(cli("upload", str(SAMPLE_BATCH), ARCHIVE_DATABASE_URL=f"postgresql://archive@127.0.0.1:{port}/x"), 2,
            "cannot connect to PostgreSQL")
    refused(cli("upload", str(SAMPLE_BATCH), ARCHIVE_S3_PART_MB="lots"), 2, "ARCHIVE_S3_PART_MB")
    assert Database(cli.database_url).count("batches") == 0


def _part(method: str, path: str) -> int | None:
    query = parse_qs(urlsplit(path).query)
    return int(query["partNumber"][0]) if method == "PUT" and "partNumber" in query else None


def _object_puts(done: list[tuple[str, str, str]], bucket: str) -> list[str]:
    """Keys of `bucket` written whole (PutObject) by the requests the server saw and answered."""
    return [urlsplit(p).path for m, p, a in done
            if m == "PUT" and urlsplit(p).path.startswith(f"/{bucket}/") and not urlsplit(p).query and a == "pass"]


def test_upload_to_s3_cut_off_part_way_resumes_and_stores_every_file_once_as_handed_in(cli, tmp_path):
    folder = shutil.copytree(SAMPLE_BATCH, tmp_path / "GZ2026-S009")
    large = folder / "pages" / "GZ2026-0070002-0000.tif"  # between the sample's pages: files go in name order
    large.write_bytes(random.Random(9).randbytes(12 * 1024**2))  # 3 parts of 5 MB, 5 MB and 2 MB
    files = _handed_in(folder)
    before = [rel for rel in files if rel < "pages/GZ2026-0070002-0000.tif"]
    # part 2 reaches the server but its answer is lost, the connection of part 3 is cut before it
    plan = {1: "pass", 2: "reset_after", 3: "reset_before"}
    proxy = FaultProxy(cli.s3_url, lambda method, path, n: plan.get(_part(method, path), "pass"))
    tuning = {"ARCHIVE_S3_ENDPOINT_URL": proxy.url, "ARCHIVE_S3_PART_MB": "5", "ARCHIVE_S3_MULTIPART_MB": "5",
              "ARCHIVE_S3_ATTEMPTS": "1", "ARCHIVE_S3_TIMEOUT_SECONDS": "10"}
    try:
        cut = cli("upload", str(folder), **tuning)
        refused(cut, 2, f"S3 at {proxy.url}", "run again to go on from where this run stopped")
        assert Database(cli.database_url).count("batches") == 0  # nothing registered until every file is in
        s3 = _s3(cli.s3_url)
        [upload] = s3.list_multipart_uploads(Bucket=cli.staging)["Uploads"]
        kept = s3.list_parts(Bucket=cli.staging, Key=upload["Key"], UploadId=upload["UploadId"])["Parts"]
        assert sorted(p["PartNumber"] for p in kept) == [1, 2]
        first_run = list(proxy.done)
        assert len(_object_puts(first_run, cli.staging)) == len(before)  # the files before the large one are in

        plan.clear()
        proxy.done.clear()
        resumed = cli("upload", str(folder), **tuning)
        assert resumed.returncode == 0, resumed.stderr[-2000:]
        assert resumed.stdout.startswith("已登记 / registered: batch GZ2026-S009-") and ", 11 files." in resumed.stdout
        second_run = list(proxy.done)
    finally:
        proxy.close()
    # only part 3 was sent again, and only the files the first run had not stored
    assert sorted(n for m, p, _ in second_run if (n := _part(m, p))) == [3]
    puts = _object_puts(first_run, cli.staging) + _object_puts(second_run, cli.staging)
    assert len(puts) == len(set(puts)) == len(files) - 1  # every small file once, the large one in parts
    assert s3.list_multipart_uploads(Bucket=cli.staging).get("Uploads", []) == []
    assert sum(1 for _ in s3.list_objects_v2(Bucket=cli.staging)["Contents"]) == len(files)
    assert _stored(cli, _batch_of(resumed.stdout)) == files


# -- report -------------------------------------------------------------------------------------


def test_report_as_json_and_as_a_page_and_its_refusals(cli, tmp_path):
    batch_id = _batch_of(cli("upload", str(SAMPLE_BATCH)).stdout)
    shown = cli("report", batch_id)
    assert shown.returncode == 0, shown.stderr[-2000:]
    report = json.loads(shown.stdout)
    assert report["batch_id"] == batch_id and report["status"] == "submitted"
    assert sorted(f["path"] for f in report["files"]) == sorted(_handed_in(SAMPLE_BATCH))
    page = tmp_path / "report.html"
    written = cli("report", batch_id, "--html", str(page))
    assert written.returncode == 0 and written.stdout.strip() == str(page)
    assert "批次报告" in page.read_text(encoding="utf-8") and batch_id in page.read_text(encoding="utf-8")

    refused(cli("report", "GZ-no-such-batch"), 1, "batch GZ-no-such-batch is unknown", label=NOT_FOUND)
    refused(cli("report", batch_id, "--html", str(tmp_path / "no-such-folder" / "r.html")), 1,
            str(tmp_path / "no-such-folder" / "r.html"))
    refused(cli("report", batch_id, ARCHIVE_DATABASE_URL=f"postgresql://archive@127.0.0.1:{free_port()}/x"), 2,
            "cannot connect to PostgreSQL")


# -- search -------------------------------------------------------------------------------------

PHRASE = "工作单位"


def _index_pages(database_url: str, files: int, pages_each: int) -> None:
    """Personnel files whose every page holds PHRASE, through the index stage's own bulk loader."""
    chunk = Chunk([], [], [])
    for n in range(files):
        number, first17 = f"GZ-W{n:03d}", f"52010219900101{n:03d}"
        id_number = first17 + idnumber.check_digit(first17)
        name = random.Random(n).choice("赵钱孙周吴郑") + random.Random(-n).choice("伟芳娜敏静强磊军")
        chunk.files.append((number, name, idnumber.lookup_hash(id_number, b"k"), id_number, idnumber.mask(id_number),
                            "520000", None, text_codes(name)))
        chunk.materials.append((number, "3", 1, "材料", "2012-01-01", "2012-01-01", 1, pages_each, "", None))
        for p in range(1, pages_each + 1):
            text = f"第{p}页 现{PHRASE}贵阳市某公司 职务科员"
            chunk.pages.append((number, "3", 1, p, f"{n:032d}{p:032d}", 0, "p.jpg", None, None, None, text, None,
                                None, None, page_codes(text, "3", 2012, shard_of(number))))
    db = Database(database_url)
    db.migrate()
    with db.transaction() as cur:
        cur.execute("INSERT INTO agencies (code, name) VALUES ('520000', '贵州省人才交流服务中心')"
                    " ON CONFLICT DO NOTHING")
        begin_load(cur)
        load_chunk(cur, chunk)


def test_search_finds_says_when_it_ranked_only_a_window_and_refuses_bad_options(cli):
    _index_pages(cli.database_url, files=RANK_WINDOW // 20 + 2, pages_each=20)  # more pages match than it ranks
    wide = cli("search", PHRASE, "--limit", "5")
    assert wide.returncode == 0, wide.stderr[-2000:]
    lines = wide.stdout.splitlines()
    assert f"only the first {RANK_WINDOW} were ranked" in lines[0] and f"仅排序了前 {RANK_WINDOW} 页" in lines[0]
    assert sum(ln.startswith("[text] GZ-W") for ln in lines) == 5 and PHRASE in wide.stdout
    as_json = cli("search", PHRASE, "--limit", "5", "--json")  # stdout stays JSON; the warning goes to stderr
    assert len(json.loads(as_json.stdout)) == 5 and f"only the first {RANK_WINDOW} were ranked" in as_json.stderr
    narrow = cli("search", PHRASE, "--batch", "no-such-batch")
    assert narrow.returncode == 0 and narrow.stdout.strip() == "没有找到 / nothing found"
    one = cli("search", "GZ-W001", "--json")
    assert one.returncode == 0, one.stderr[-2000:]
    hits = json.loads(one.stdout)
    assert hits[0]["kind"] == "file_number" and hits[0]["file_number"] == "GZ-W001"
    assert "*" in hits[0]["id_masked"] and "520102199001010" not in one.stdout  # ID numbers masked

    refused(cli("search", PHRASE, "--from", "2012-13-01"), 1, "2012-13-01")
    for option, value in (("--limit", "0"), ("--limit", "-1"), ("--offset", "-1"), ("--limit", str(10**20))):
        refused(cli("search", PHRASE, option, value), 1, option)
    refused(cli("search", PHRASE, ARCHIVE_DATABASE_URL=f"postgresql://archive@127.0.0.1:{free_port()}/x"), 2,
            "cannot connect to PostgreSQL")


# -- serve --------------------------------------------------------------------------------------


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as res:
            return res.status, res.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@pytest.mark.parametrize("database", ["configured", "demo"])
def test_serve_answers_and_stops_by_pid(cli, database):
    port = free_port()
    cmd, env = cli.command("serve", "--port", str(port))
    if database == "demo":  # no ARCHIVE_DATABASE_URL: serve starts the demo PostgreSQL, and must stop it
        env = {k: v for k, v in env.items() if k != "ARCHIVE_DATABASE_URL"}
        env.update(ARCHIVE_PG_PORT=str(free_port()))
        shutil.copy(REPO / "dagster_home" / "dagster.yaml", Path(env["DAGSTER_HOME"]) / "dagster.yaml")
    proc = subprocess.Popen(cmd, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                status, body = _get(f"http://127.0.0.1:{port}/login")
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, "the staff web did not come up"
                time.sleep(0.5)
        assert status == 200 and "<form" in body
        assert _get(f"http://127.0.0.1:{port}/api/batches")[0] == 401  # no session, no token: refused
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    instance = subprocess.run([cmd[0], "services", "status"], env=env, cwd=REPO, capture_output=True, text=True)
    if database == "demo" and "running" in instance.stdout:
        subprocess.run([cmd[0], "services", "stop"], env=env, cwd=REPO, capture_output=True)
    assert proc.returncode == 0, err[-2000:]
    assert f"staff web: http://127.0.0.1:{port}/" in out and "Traceback" not in err
    assert "PostgreSQL stopped" in instance.stdout


def test_serve_refuses_a_configuration_it_cannot_serve(cli, tmp_path):
    port = str(free_port())

    def serve(*args: str, **env: str) -> subprocess.CompletedProcess:
        return cli("serve", *args, timeout=60, **env)  # a refusal is at once; a server that starts is a failure

    refused(serve("--host", "0.0.0.0", "--port", port), 2, "beyond loopback, needs TLS")
    refused(serve("--port", port, ARCHIVE_SESSION_HOURS="soon"), 2, "ARCHIVE_SESSION_HOURS")
    refused(serve("--port", port, ARCHIVE_DATABASE_URL=f"postgresql://archive@127.0.0.1:{port}/x"), 2,
            "cannot connect to PostgreSQL")
    refused(serve("--port", "70000"), 1, "--port")
    refused(serve("--port", port, "--tls-cert", str(tmp_path / "cert.pem")), 1, "--tls-key")
    refused(serve("--port", port, "--tls-cert", str(tmp_path / "cert.pem"), "--tls-key",
                str(tmp_path / "key.pem")), 1, str(tmp_path / "cert.pem"))
    (tmp_path / "cert.pem").write_text("-----BEGIN CERTIFICATE-----\nnot one\n-----END CERTIFICATE-----\n")
    (tmp_path / "key.pem").write_text("not a key either\n")
    refused(serve("--port", port, "--tls-cert", str(tmp_path / "cert.pem"), "--tls-key",
                str(tmp_path / "key.pem")), 1, "cannot serve TLS with")
    with socket.socket() as taken:  # another program has the port
        taken.bind(("127.0.0.1", int(port)))
        taken.listen()
        refused(serve("--port", port), 2, f"127.0.0.1:{port}")


def test_a_wrong_command_line_is_bad_input_not_a_setup_problem(tmp_path):
    """argparse's own status is 2, which `archive` keeps for setup problems."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARCHIVE_")} | {"DAGSTER_HOME": str(tmp_path)}
    for args, said in ((["search", "--limit", "abc", "张三"], "invalid int value"), ([], "required"),
                       (["no-such-command"], "invalid choice")):
        r = subprocess.run([str(ARCHIVE), *args], env=env, cwd=REPO, capture_output=True, text=True, timeout=60)
        assert "Traceback" not in r.stderr
        refused(r, 1, said)
