"""The one configuration: read from the environment in one place, every problem reported at once."""

import os
import subprocess

import pytest

from errors import SetupError
from settings import Settings
from tests.conftest import REPO

BAD = {"ARCHIVE_S3_ATTEMPTS": "0", "ARCHIVE_SESSION_HOURS": "twelve", "ARCHIVE_S3_VERIFY": "sometimes",
       "ARCHIVE_REPLICAS": "Primary", "ARCHIVE_INBOX_SETTLE_SECONDS": "-1"}


def test_every_bad_setting_is_named_at_once(monkeypatch):
    for name, value in BAD.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SetupError) as raised:
        Settings.from_env()
    message = raised.value.message_en
    assert message.startswith(f"{len(BAD)} configuration problems")
    for name, value in BAD.items():
        assert repr(value) in message, name


def test_one_bad_setting_is_its_own_sentence(monkeypatch):
    monkeypatch.setenv("ARCHIVE_LOCKOUT_AFTER", "many")
    with pytest.raises(SetupError) as raised:
        Settings.from_env()
    assert raised.value.message_en == "ARCHIVE_LOCKOUT_AFTER='many' must be a whole number of at least 1"


def test_storage_inbox_and_keys_come_from_the_same_settings(monkeypatch, tmp_path):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    monkeypatch.setenv("ARCHIVE_BUCKET", "kept")
    monkeypatch.setenv("ARCHIVE_REPLICAS", "far")
    monkeypatch.setenv("ARCHIVE_REPLICA_FAR_OBJECT_ROOT", str(tmp_path / "far"))
    s = Settings.from_env()
    assert s.storage.archive_bucket == "kept" and s.storage.replicas[0].bucket == "kept"
    assert s.inbox_dir == tmp_path / "inbox" and s.keys_dir == tmp_path / "keys"


def test_the_cli_refuses_bad_settings_before_any_work():
    env = {**os.environ, **BAD, "ARCHIVE_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"}
    done = subprocess.run([str(REPO / ".venv" / "bin" / "archive"), "report", "GZ-NONE"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert all(name in done.stderr or repr(value) in done.stderr for name, value in BAD.items())
