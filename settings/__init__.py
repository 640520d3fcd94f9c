"""The one configuration: a Settings object read from the environment (settings.environment is
the only module that reads it), validated as a whole so every problem is reported at once, a
sentence each. Every setting has a demo default; with ARCHIVE_ENV=production the demo defaults
are refused (production_problems).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from pathlib import Path

from errors import SetupError
from settings.environment import Problems, flag, number, secret_file, text, whole
from settings.storage import ReplicaSettings, S3Tuning, StorageSettings, storage_from_env

DEMO_AGENCY_CODE, DEMO_AGENCY_NAME = "520000", "贵州省人才交流服务中心"
# Demo-only keys, never for production: anyone with this source could recompute ID hashes and
# decrypt ID numbers.
DEMO_ID_HASH_KEY = b"demo-id-hash-key-not-for-production"
DEMO_ID_KEY = ("demo", base64.b64decode("ZGVtby1pZC1rZXktbm90LWZvci1wcm9kdWN0aW9uISE="))  # 32 bytes
DEMO_AUDIT_KEY = b"demo-audit-key-not-for-production"
DEMO_PLATFORM_ID_HASH_KEY = b"demo-national-platform-id-hash-key"
MIN_KEY_BYTES = 32
EXECUTORS = ("in_process", "multiprocess", "celery")


def parse_id_keys(raw: str) -> tuple[str, dict[str, bytes]]:
    """ARCHIVE_ID_KEYS: `id=base64key,older=base64key`, 32-byte keys, the first the current one."""
    keys: dict[str, bytes] = {}
    for part in filter(None, (p.strip() for p in raw.split(","))):
        kid, sep, value = part.partition("=")
        try:
            key = base64.b64decode(value, validate=True)
        except ValueError:
            key = b""
        if not sep or not kid or len(key) != 32:
            raise SetupError("ARCHIVE_ID_KEYS 格式应为 编号=base64密钥（32 字节），多个用逗号分隔",
                             "ARCHIVE_ID_KEYS must be id=base64key pairs (32-byte keys), comma separated")
        keys[kid.strip()] = key
    if not keys:
        raise SetupError("ARCHIVE_ID_KEYS 为空", "ARCHIVE_ID_KEYS holds no key")
    return next(iter(keys)), keys


@dataclass(frozen=True)
class Settings:
    environment: str = "demo"                       # ARCHIVE_ENV: demo | production
    agency_code: str = DEMO_AGENCY_CODE             # ARCHIVE_AGENCY: the agency holding this installation's files
    agency_name: str = DEMO_AGENCY_NAME             # ARCHIVE_AGENCY_NAME
    id_hash_key: bytes = DEMO_ID_HASH_KEY           # ARCHIVE_ID_HASH_KEY
    audit_key: bytes = DEMO_AUDIT_KEY               # ARCHIVE_AUDIT_KEY: the audit chain's HMAC key
    id_key_current: str = DEMO_ID_KEY[0]            # ARCHIVE_ID_KEYS
    id_keys: dict[str, bytes] = field(default_factory=lambda: {DEMO_ID_KEY[0]: DEMO_ID_KEY[1]})
    session_idle_minutes: int = 30                  # ARCHIVE_SESSION_IDLE_MINUTES
    session_hours: int = 12                         # ARCHIVE_SESSION_HOURS: absolute expiry
    lockout_after: int = 5                          # ARCHIVE_LOCKOUT_AFTER failed logins in a row
    lockout_minutes: int = 15                       # ARCHIVE_LOCKOUT_MINUTES
    login_delay_ms: int = 500                       # ARCHIVE_LOGIN_DELAY_MS: a failed login answers this much
                                                    # later per failure in a row (at most 6 times as long)
    login_per_minute: int = 10                      # ARCHIVE_LOGIN_PER_MINUTE from one address
    search_per_minute: int = 120                    # ARCHIVE_SEARCH_PER_MINUTE for one identity
    refusals_per_minute: int = 60                   # ARCHIVE_REFUSALS_PER_MINUTE audited for one unknown address
    max_upload_bytes: int = 4 * 1024**3             # ARCHIVE_MAX_UPLOAD_BYTES: one upload request
    allowed_hosts: tuple[str, ...] = ("127.0.0.1", "localhost")  # ARCHIVE_WEB_HOSTS
    behind_tls_proxy: bool = False                  # ARCHIVE_BEHIND_TLS_PROXY=1
    transfer_valid_days: int = 15                   # ARCHIVE_TRANSFER_VALID_DAYS: a record may be accepted this
                                                    # long (paper rules allow 15 working days)
    receipt_overdue_hours: int = 24                 # ARCHIVE_RECEIPT_OVERDUE_HOURS: no receipt after this, flagged
    transfer_workdir: str = ""                      # ARCHIVE_TRANSFER_WORKDIR: where packages are built and fetched
                                                    # (default DAGSTER_HOME/transfers)
    platform_url: str = ""                          # ARCHIVE_PLATFORM_URL: the national platform's API (https://...);
                                                    # unset: records wait in the outbox
    platform_token: str = ""                        # ARCHIVE_PLATFORM_TOKEN, or the file ARCHIVE_PLATFORM_TOKEN_FILE
    platform_ca_file: str = ""                      # ARCHIVE_PLATFORM_CA_FILE: its CA, if not a public one
    platform_id_hash_key: bytes = DEMO_PLATFORM_ID_HASH_KEY  # ARCHIVE_PLATFORM_ID_HASH_KEY: the key the platform
                                                    # distributes, so a person's hash is the same in every province
    platform_retry_seconds: int = 2                 # ARCHIVE_PLATFORM_RETRY_SECONDS: first retry after this (doubling,
                                                    # jittered, at most 10 minutes)
    platform_timeout_seconds: int = 10              # ARCHIVE_PLATFORM_TIMEOUT_SECONDS: one call to the platform
    storage: StorageSettings = field(default_factory=lambda: StorageSettings(
        "postgresql://archive@127.0.0.1:54329/archive", None, None))  # ARCHIVE_DATABASE_URL, ARCHIVE_S3_*...
    dagster_home: str = "dagster_home"              # DAGSTER_HOME: Dagster's instance, keys, the demo's state
    inbox: str = ""                                 # ARCHIVE_INBOX: folders handed in (default DAGSTER_HOME/inbox)
    inbox_settle_seconds: float = 10.0              # ARCHIVE_INBOX_SETTLE_SECONDS: unchanged this long, it is taken
    signing_key_pem: str = ""                       # ARCHIVE_SIGNING_KEY: the agency's Ed25519 key (PEM), else the
                                                    # key file under DAGSTER_HOME/keys
    pull_token: str = ""                            # ARCHIVE_PULL_TOKEN: the token a sender issued us
    pull_ca_file: str = ""                          # ARCHIVE_PULL_CA_FILE: a sender's CA, if not a public one
    executor: str = ""                              # ARCHIVE_EXECUTOR: how runs execute their steps: in_process |
                                                    # multiprocess (this machine) | celery (workers); unset, the
                                                    # daemon's runs multiprocess, `archive run`'s in its process
    celery_broker: str = "redis://127.0.0.1:6390/0"  # ARCHIVE_CELERY_BROKER: Redis, the broker and result store
    intake_unit_files: int = 200                    # ARCHIVE_INTAKE_UNIT_FILES: page files per unit of intake's checks
    ocr_unit_pages: int = 50                        # ARCHIVE_OCR_UNIT_PAGES: pages per OCR unit (one step each)
    copy_unit_files: int = 500                      # ARCHIVE_COPY_UNIT_FILES: page files per unit of archive copies
    pdf_unit_pages: int = 200                       # ARCHIVE_PDF_UNIT_PAGES: pages per unit of searchable PDFs

    @property
    def production(self) -> bool:
        return self.environment == "production"

    @classmethod
    def from_env(cls) -> Settings:
        """The whole configuration; one SetupError naming every bad value (a sentence each)."""
        problems = Problems()
        env = text("ARCHIVE_ENV", "demo")
        if env not in ("demo", "production"):
            problems.add(f"ARCHIVE_ENV={env!r} 应为 demo 或 production",
                         f"ARCHIVE_ENV={env!r} must be demo or production")
        current, keys = DEMO_ID_KEY[0], {DEMO_ID_KEY[0]: DEMO_ID_KEY[1]}
        if text("ARCHIVE_ID_KEYS"):
            try:
                current, keys = parse_id_keys(text("ARCHIVE_ID_KEYS"))
            except SetupError as exc:
                problems.found.append(exc)
        code = text("ARCHIVE_AGENCY", DEMO_AGENCY_CODE)
        executor = text("ARCHIVE_EXECUTOR")
        if executor and executor not in EXECUTORS:
            problems.add(f"ARCHIVE_EXECUTOR={executor!r} 应为 {' / '.join(EXECUTORS)} 之一",
                         f"ARCHIVE_EXECUTOR={executor!r} must be one of {', '.join(EXECUTORS)}")
        broker = text("ARCHIVE_CELERY_BROKER", "redis://127.0.0.1:6390/0")
        if not broker.startswith(("redis://", "rediss://")):
            problems.add(f"ARCHIVE_CELERY_BROKER={broker!r} 应为 redis:// 或 rediss:// 地址",
                         f"ARCHIVE_CELERY_BROKER={broker!r} must be a redis:// or rediss:// URL")
        hosts = tuple(h.strip() for h in text("ARCHIVE_WEB_HOSTS", "127.0.0.1,localhost").split(",") if h.strip())

        def n(name: str, default: int) -> int:
            return whole(problems, name, default)

        settings = cls(
            environment=env,
            agency_code=code,
            agency_name=text("ARCHIVE_AGENCY_NAME", DEMO_AGENCY_NAME if code == DEMO_AGENCY_CODE else code),
            id_hash_key=text("ARCHIVE_ID_HASH_KEY").encode() or DEMO_ID_HASH_KEY,
            audit_key=text("ARCHIVE_AUDIT_KEY").encode() or DEMO_AUDIT_KEY,
            id_key_current=current, id_keys=keys,
            session_idle_minutes=n("ARCHIVE_SESSION_IDLE_MINUTES", 30),
            session_hours=n("ARCHIVE_SESSION_HOURS", 12),
            lockout_after=n("ARCHIVE_LOCKOUT_AFTER", 5),
            lockout_minutes=n("ARCHIVE_LOCKOUT_MINUTES", 15),
            login_delay_ms=n("ARCHIVE_LOGIN_DELAY_MS", 500),
            login_per_minute=n("ARCHIVE_LOGIN_PER_MINUTE", 10),
            search_per_minute=n("ARCHIVE_SEARCH_PER_MINUTE", 120),
            refusals_per_minute=n("ARCHIVE_REFUSALS_PER_MINUTE", 60),
            max_upload_bytes=n("ARCHIVE_MAX_UPLOAD_BYTES", 4 * 1024**3),
            allowed_hosts=hosts,
            behind_tls_proxy=flag("ARCHIVE_BEHIND_TLS_PROXY"),
            transfer_valid_days=n("ARCHIVE_TRANSFER_VALID_DAYS", 15),
            receipt_overdue_hours=n("ARCHIVE_RECEIPT_OVERDUE_HOURS", 24),
            transfer_workdir=text("ARCHIVE_TRANSFER_WORKDIR"),
            platform_url=text("ARCHIVE_PLATFORM_URL"),
            platform_token=text("ARCHIVE_PLATFORM_TOKEN") or secret_file(problems, text("ARCHIVE_PLATFORM_TOKEN_FILE")),
            platform_ca_file=text("ARCHIVE_PLATFORM_CA_FILE"),
            platform_id_hash_key=text("ARCHIVE_PLATFORM_ID_HASH_KEY").encode() or DEMO_PLATFORM_ID_HASH_KEY,
            platform_retry_seconds=n("ARCHIVE_PLATFORM_RETRY_SECONDS", 2),
            platform_timeout_seconds=n("ARCHIVE_PLATFORM_TIMEOUT_SECONDS", 10),
            storage=storage_from_env(problems),
            dagster_home=text("DAGSTER_HOME", "dagster_home"),
            inbox=text("ARCHIVE_INBOX"),
            inbox_settle_seconds=number(problems, "ARCHIVE_INBOX_SETTLE_SECONDS", 10.0),
            signing_key_pem=text("ARCHIVE_SIGNING_KEY"),
            pull_token=text("ARCHIVE_PULL_TOKEN"),
            pull_ca_file=text("ARCHIVE_PULL_CA_FILE"),
            executor=executor,
            celery_broker=broker,
            intake_unit_files=n("ARCHIVE_INTAKE_UNIT_FILES", 200),
            ocr_unit_pages=n("ARCHIVE_OCR_UNIT_PAGES", 50),
            copy_unit_files=n("ARCHIVE_COPY_UNIT_FILES", 500),
            pdf_unit_pages=n("ARCHIVE_PDF_UNIT_PAGES", 200),
        )
        problems.raise_all()
        return settings

    @property
    def transfer_dir(self) -> Path:
        return Path(self.transfer_workdir or Path(self.dagster_home) / "transfers")

    @property
    def inbox_dir(self) -> Path:
        return Path(self.inbox or Path(self.dagster_home) / "inbox")

    @property
    def keys_dir(self) -> Path:
        return Path(self.dagster_home) / "keys"

    def production_problems(self) -> list[SetupError]:
        """What production refuses in these settings (the database and signing key are checked
        where they are opened: devservices/production.py)."""
        problems = []
        for key, demo, var, zh, en in ((self.id_hash_key, DEMO_ID_HASH_KEY, "ARCHIVE_ID_HASH_KEY", "身份证号散列密钥",
                                        "ID-hash key"),
                                       (self.audit_key, DEMO_AUDIT_KEY, "ARCHIVE_AUDIT_KEY", "审计密钥", "audit key"),
                                       (self.platform_id_hash_key, DEMO_PLATFORM_ID_HASH_KEY,
                                        "ARCHIVE_PLATFORM_ID_HASH_KEY", "全国平台身份证号散列密钥",
                                        "national platform's ID-hash key")):
            if key == demo:
                problems.append(SetupError(f"生产环境不能使用演示用的{zh}，请设置 {var}",
                                           f"production refuses the demo {en}: set {var}"))
            elif len(key) < MIN_KEY_BYTES:
                problems.append(SetupError(f"{var} 至少需要 {MIN_KEY_BYTES} 字节", f"{var} needs at least "
                                           f"{MIN_KEY_BYTES} bytes"))
        if DEMO_ID_KEY[1] in self.id_keys.values():
            problems.append(SetupError("生产环境不能使用演示用的身份证号加密密钥，请设置 ARCHIVE_ID_KEYS",
                                       "production refuses the demo ID-encryption key: set ARCHIVE_ID_KEYS"))
        return problems


__all__ = ["Settings", "StorageSettings", "ReplicaSettings", "S3Tuning", "parse_id_keys", "DEMO_AGENCY_CODE",
           "DEMO_AGENCY_NAME", "DEMO_ID_HASH_KEY", "DEMO_ID_KEY", "DEMO_AUDIT_KEY", "DEMO_PLATFORM_ID_HASH_KEY"]
