"""A private PostgreSQL cluster in a folder: initdb once, pg_ctl start/stop, on loopback.

PostgreSQL refuses to run as root, so as root the server runs as the `postgres` system user
(created by Debian's postgresql package) through runuser.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
from pathlib import Path

import psycopg2

from errors import SetupError


def find_bindir() -> Path:
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(p.split("/")[4]))
    if candidates:
        return Path(candidates[-1]).parent
    found = shutil.which("pg_ctl")
    if found and shutil.which("initdb"):
        return Path(found).resolve().parent
    raise SetupError("未找到 PostgreSQL 服务器程序（initdb、pg_ctl），请运行 `make setup`",
                     "PostgreSQL server binaries (initdb, pg_ctl) not found; install them with "
                     "`apt-get install postgresql-15` (or run `make setup`)")


class LocalPostgres:
    def __init__(self, datadir: Path, port: int, user: str = "archive") -> None:
        self.datadir = Path(datadir).absolute()
        self.port = port
        self.user = user
        self.bindir = find_bindir()

    def url(self, database: str) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{database}"

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        cmd = [str(self.bindir / args[0]), *args[1:]]
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if check and proc.returncode != 0:
            raise SetupError(f"PostgreSQL 命令 {args[0]} 执行失败（{proc.returncode}）",
                             f"{args[0]} failed ({proc.returncode}): {proc.stderr.strip() or proc.stdout.strip()}"
                             f"{self._log_tail()}")
        return proc

    def _log_tail(self) -> str:
        log = self.datadir / "server.log"
        if log.exists():
            return "\nserver.log:\n" + "\n".join(log.read_text(errors="replace").splitlines()[-10:])
        return ""

    def _prepare_dir(self) -> None:
        self.datadir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            try:
                pw = pwd.getpwnam("postgres")
            except KeyError as exc:
                raise SetupError("以 root 运行需要系统用户 postgres，请安装 postgresql-15",
                                 "running as root needs the `postgres` system user to own the cluster; "
                                 "`apt-get install postgresql-15` creates it") from exc
            os.chown(self.datadir, pw.pw_uid, pw.pw_gid)
            # the server user must be able to reach the folder
            for parent in self.datadir.parents:
                if parent.stat().st_mode & 0o001 == 0:
                    raise SetupError(f"postgres 用户无法进入目录 {parent}",
                                     f"{parent} is not searchable by the postgres user (mode "
                                     f"{oct(parent.stat().st_mode & 0o777)}); use another folder or chmod o+x")
        self.datadir.chmod(0o700)

    @property
    def initialised(self) -> bool:
        return (self.datadir / "PG_VERSION").exists()

    def running(self) -> bool:
        return self.initialised and self._run("pg_ctl", "status", "-D", str(self.datadir), check=False).returncode == 0

    def start(self) -> None:
        if not self.initialised:
            self._prepare_dir()
            self._run("initdb", "-D", str(self.datadir), "-U", self.user, "-A", "trust", "-E", "UTF8",
                      "--no-locale")
        if self.running():
            return
        opts = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.datadir} -c fsync=on"
        self._run("pg_ctl", "start", "-w", "-t", "60", "-D", str(self.datadir), "-l",
                  str(self.datadir / "server.log"), "-o", opts)

    def stop(self) -> None:
        if self.running():
            self._run("pg_ctl", "stop", "-w", "-m", "fast", "-D", str(self.datadir))

    def ensure_database(self, name: str) -> None:
        conn = psycopg2.connect(self.url("postgres"), connect_timeout=10)
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
                if not cur.fetchone():
                    cur.execute(f'CREATE DATABASE "{name}"')
        finally:
            conn.close()
