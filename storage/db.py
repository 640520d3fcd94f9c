"""PostgreSQL access: connections, transactions and versioned migrations."""

from __future__ import annotations

import io
import os
import re
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from importlib import resources

import numpy as np
import psycopg2
import psycopg2.extensions
import psycopg2.extras

from errors import SetupError

_MIGRATION = re.compile(r"^(\d{4})_[\w-]+\.(sql|py)$")
_LOCK_ID = 0x5041_0001  # advisory lock: one migrator at a time


class DatabaseUnavailable(SetupError):
    """PostgreSQL could not be reached; the message names the URL (without password)."""

    transient = True


class DatabaseRefused(DatabaseUnavailable):
    """PostgreSQL answered and refused the connection: not retried."""

    transient = False


def redact(url: str) -> str:
    return re.sub(r"//([^:/@]+):[^@]*@", r"//\1:***@", url)


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def connect(url: str) -> psycopg2.extensions.connection:
    try:
        return psycopg2.connect(url, connect_timeout=10)
    except psycopg2.OperationalError as exc:
        # a refusal (wrong password, no such database or role) stays until someone fixes it
        refused = re.search(r"authentication failed|does not exist|no pg_hba.conf entry", str(exc))
        raise (DatabaseRefused if refused else DatabaseUnavailable)(
            f"无法连接数据库 {redact(url)}",
            f"cannot connect to PostgreSQL at {redact(url)}: {_first_line(exc)}. Start it with "
            "`archive services start` (demo) or set ARCHIVE_DATABASE_URL") from exc


class Database:
    """A URL plus helpers; each `transaction()` is one connection, committed on success.

    `keep` > 0 keeps that many idle connections for the next transactions, for a long-lived
    server: a new connection costs a connect and a fresh backend's cold catalog caches, a large
    share of a search (web/app.py). A kept one is
    checked with a round trip before use (a restarted server only costs a reconnect), and a
    forked child never uses its parent's (they share the sockets; psycopg2 closes a connection it
    collects only in the process that opened it)."""

    def __init__(self, url: str, keep: int = 0, schema_package: str = "storage") -> None:
        self.url = url
        self.keep = keep
        self.schema_package = schema_package   # whose migrations/ folder makes this database
        self._idle: list[psycopg2.extensions.connection] = []
        self._pid = os.getpid()
        self._lock = threading.Lock()

    @contextmanager
    def transaction(self) -> Iterator[psycopg2.extensions.cursor]:
        """One transaction; a connection lost in it (a server restarting) is DatabaseUnavailable.
        Lost before COMMIT, nothing was committed; lost during it, the commit may have happened:
        either way a stage keyed by content may run it again (a step's retry)."""
        conn = self._take()
        try:
            with conn, conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
                yield cur
        except (psycopg2.OperationalError, psycopg2.InterfaceError) as exc:
            if not conn.closed:
                raise  # the server said no (a deadlock, a timeout): the caller's to handle
            raise DatabaseUnavailable(f"与数据库 {redact(self.url)} 的连接在事务中断开",
                                      f"the connection to PostgreSQL at {redact(self.url)} was lost during a "
                                      f"transaction: {_first_line(exc)}") from exc
        finally:
            self._give(conn)

    def _take(self) -> psycopg2.extensions.connection:
        while True:
            with self._lock:
                if self._pid != os.getpid():  # forked
                    self._idle, self._pid = [], os.getpid()
                conn = self._idle.pop() if self._idle else None
            if conn is None:
                return connect(self.url)
            try:
                with conn.cursor() as cur:
                    cur.execute("SELECT 1")  # opens the transaction the caller then uses
                return conn
            except psycopg2.Error:
                conn.close()

    def _give(self, conn: psycopg2.extensions.connection) -> None:
        with self._lock:
            if not conn.closed and self._pid == os.getpid() and len(self._idle) < self.keep:
                self._idle.append(conn)
                return
        conn.close()

    def migrate(self, upto: str | None = None) -> list[str]:
        """Applies pending migrations in order (those numbered up to `upto` only, if given); safe
        to run concurrently and repeatedly."""
        applied: list[str] = []
        if not self.pending(upto):  # nothing to do needs no privilege beyond reading (an app role)
            return applied
        with self.transaction() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_ID,))
            cur.execute("CREATE TABLE IF NOT EXISTS schema_migrations ("
                        " version integer PRIMARY KEY, name text NOT NULL,"
                        " applied_at timestamptz NOT NULL DEFAULT now())")
            cur.execute("SELECT version FROM schema_migrations")
            done = {row["version"] for row in cur.fetchall()}
            for name, source in migrations(self.schema_package):
                version = int(name[:4])
                if version in done or (upto is not None and version > int(upto)):
                    continue
                apply_migration(cur, name, source)
                cur.execute("INSERT INTO schema_migrations (version, name) VALUES (%s, %s)", (version, name))
                applied.append(name)
        return applied

    def pending(self, upto: str | None = None) -> list[str]:
        """Migrations not applied yet (those numbered up to `upto`), read without any lock."""
        with self.transaction() as cur:
            cur.execute("SELECT to_regclass('schema_migrations') IS NOT NULL AS ready")
            done: set[int] = set()
            if cur.fetchone()["ready"]:
                cur.execute("SELECT version FROM schema_migrations")
                done = {row["version"] for row in cur.fetchall()}
        return [name for name, _ in migrations(self.schema_package)
                if int(name[:4]) not in done and (upto is None or int(name[:4]) <= int(upto))]

    def count(self, table: str) -> int:
        with self.transaction() as cur:
            cur.execute(f'SELECT count(*) AS n FROM "{table}"')  # table names come from code only
            return cur.fetchone()["n"]


def xact_lock(cur, name: str, *, wait: bool = True) -> bool:
    """Takes the advisory lock called `name` for the rest of the cursor's transaction: waits for
    it, or with `wait=False` answers at once whether it was free. One lock per name across every
    process on the database (a batch's run, a transfer's packaging, a file's inventory...)."""
    cur.execute(f"SELECT {'pg_advisory_xact_lock' if wait else 'pg_try_advisory_xact_lock'}"
                "(hashtextextended(%s, 0)) AS got", (name,))
    return wait or cur.fetchone()["got"]


def apply_migration(cur, name: str, source: str) -> None:
    """Runs one migration: SQL, or Python whose migrate(cur) rewrites data with the application's
    own functions (e.g. search terms)."""
    if name.endswith(".py"):
        namespace: dict = {}
        exec(compile(source, name, "exec"), namespace)  # noqa: S102 - our own packaged file
        namespace["migrate"](cur)
    else:
        cur.execute(source)


def migrations(package: str = "storage") -> list[tuple[str, str]]:
    """(file name, source) of every migration of `package`, in order: SQL, or Python defining
    migrate(cur)."""
    folder = resources.files(package) / "migrations"
    names = sorted(p.name for p in folder.iterdir() if _MIGRATION.match(p.name))
    return [(n, (folder / n).read_text(encoding="utf-8")) for n in names]


TABLES = ("batches", "batch_files", "personnel_files", "materials", "pages", "stored_objects",
          "transfers", "transfer_events", "events")


_DATE_ZERO = date(2000, 1, 1).toordinal()  # PostgreSQL's binary dates count days from here
_NULL = struct.pack(">i", -1)
# int4[]: field length, dimensions, has nulls, element type (int4), length, lower bound; an
# empty array has no dimension
_INT4_ARRAY_HEADER = struct.Struct(">iiiiii")
_INT4_EMPTY = struct.pack(">iiii", 12, 0, 0, 23)


def _text(value: str) -> bytes:
    data = value.encode()
    return struct.pack(">i", len(data)) + data


def _int4_array(values) -> bytes:
    codes = np.asarray(values, dtype=">i4")
    if not len(codes):
        return _INT4_EMPTY
    body = np.empty(2 * len(codes), dtype=">i4")
    body[0::2] = 4  # every element is 4 bytes long
    body[1::2] = codes
    return _INT4_ARRAY_HEADER.pack(20 + 8 * len(codes), 1, 0, 23, len(codes), 1) + body.tobytes()


ENCODERS = {
    "text": _text,
    "int4": lambda v: struct.pack(">ii", 4, v),
    "int8": lambda v: struct.pack(">iq", 8, v),
    "float4": lambda v: struct.pack(">if", 4, v),
    "date": lambda v: struct.pack(">ii", 4, date.fromisoformat(str(v)).toordinal() - _DATE_ZERO),
    "int4[]": _int4_array,
}


def encode_fields(columns: tuple[tuple[str, str], ...], rows: list[tuple]) -> list[bytes]:
    """Each row's fields in PostgreSQL's binary COPY format, without the field count: rows can be
    encoded away from the connection (a thread) and completed with more fields in front."""
    encoders = [ENCODERS[kind] for _, kind in columns]
    return [b"".join(_NULL if v is None else enc(v) for enc, v in zip(encoders, row, strict=True)) for row in rows]


def field_count(columns: tuple[tuple[str, str], ...]) -> bytes:
    return struct.pack(">h", len(columns))


def copy_encoded(cur, table: str, columns: tuple[tuple[str, str], ...], rows: list[bytes]) -> None:
    """COPY rows already encoded (field count, then encode_fields) into `table`."""
    buf = io.BytesIO()
    buf.write(b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0))
    buf.writelines(rows)
    buf.write(struct.pack(">h", -1))
    buf.seek(0)
    cur.copy_expert(f"COPY {table} ({', '.join(name for name, _ in columns)}) FROM STDIN WITH (FORMAT binary)", buf)


def copy_binary(cur, table: str, columns: tuple[tuple[str, str], ...], rows: list[tuple]) -> None:
    """COPY rows into `table` in PostgreSQL's binary format; `columns` are (name, type) with
    types from ENCODERS. Binary, because the search codes are arrays of ~300 integers a page,
    which the text format makes the server parse digit by digit. Names come from code only."""
    count = field_count(columns)
    copy_encoded(cur, table, columns, [count + fields for fields in encode_fields(columns, rows)])
