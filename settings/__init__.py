"""Configuration from the environment: the agency this installation holds files for, the keys
that protect ID numbers, and the staff web's limits. Every setting has a demo default; with
ARCHIVE_ENV=production the demo defaults are refused (check_production), one sentence each.

(Storage settings are still storage/config.py's; issue 20 brings them here.)
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass, field
from pathlib import Path

from errors import SetupError

DEMO_AGENCY_CODE, DEMO_AGENCY_NAME = "520000", "贵州省人才交流服务中心"
# Demo-only keys, never for production: anyone with this source could recompute ID hashes and
# decrypt ID numbers.
DEMO_ID_HASH_KEY = b"demo-id-hash-key-not-for-production"
DEMO_ID_KEY = ("demo", base64.b64decode("ZGVtby1pZC1rZXktbm90LWZvci1wcm9kdWN0aW9uISE="))  # 32 bytes
DEMO_AUDIT_KEY = b"demo-audit-key-not-for-production"
DEMO_PLATFORM_ID_HASH_KEY = b"demo-national-platform-id-hash-key"
MIN_KEY_BYTES = 32


def _env(name: str, default: str = "") -> str:
    return os.environ.get(name, "").strip() or default


def _int(name: str, default: int) -> int:
    raw = _env(name)
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SetupError(f"{name}={raw!r} 不是整数", f"{name}={raw!r} is not a whole number") from None
    if value <= 0:
        raise SetupError(f"{name} 必须大于 0", f"{name} must be greater than 0")
    return value


def _file(path: str) -> str:
    """A secret kept in a file (its first line), or "" when no file is named."""
    if not path:
        return ""
    try:
        return Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise SetupError(f"无法读取 {path}：{exc.strerror}", f"cannot read {path}: {exc.strerror}", item=path) from None


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

    @property
    def production(self) -> bool:
        return self.environment == "production"

    @classmethod
    def from_env(cls) -> Settings:
        env = _env("ARCHIVE_ENV", "demo")
        if env not in ("demo", "production"):
            raise SetupError(f"ARCHIVE_ENV={env!r} 应为 demo 或 production",
                             f"ARCHIVE_ENV={env!r} must be demo or production")
        current, keys = parse_id_keys(_env("ARCHIVE_ID_KEYS")) if _env("ARCHIVE_ID_KEYS") else \
            (DEMO_ID_KEY[0], {DEMO_ID_KEY[0]: DEMO_ID_KEY[1]})
        code = _env("ARCHIVE_AGENCY", DEMO_AGENCY_CODE)
        hosts = tuple(h.strip() for h in _env("ARCHIVE_WEB_HOSTS", "127.0.0.1,localhost").split(",") if h.strip())
        return cls(
            environment=env,
            agency_code=code,
            agency_name=_env("ARCHIVE_AGENCY_NAME", DEMO_AGENCY_NAME if code == DEMO_AGENCY_CODE else code),
            id_hash_key=_env("ARCHIVE_ID_HASH_KEY").encode() or DEMO_ID_HASH_KEY,
            audit_key=_env("ARCHIVE_AUDIT_KEY").encode() or DEMO_AUDIT_KEY,
            id_key_current=current, id_keys=keys,
            session_idle_minutes=_int("ARCHIVE_SESSION_IDLE_MINUTES", 30),
            session_hours=_int("ARCHIVE_SESSION_HOURS", 12),
            lockout_after=_int("ARCHIVE_LOCKOUT_AFTER", 5),
            lockout_minutes=_int("ARCHIVE_LOCKOUT_MINUTES", 15),
            login_delay_ms=_int("ARCHIVE_LOGIN_DELAY_MS", 500),
            login_per_minute=_int("ARCHIVE_LOGIN_PER_MINUTE", 10),
            search_per_minute=_int("ARCHIVE_SEARCH_PER_MINUTE", 120),
            refusals_per_minute=_int("ARCHIVE_REFUSALS_PER_MINUTE", 60),
            max_upload_bytes=_int("ARCHIVE_MAX_UPLOAD_BYTES", 4 * 1024**3),
            allowed_hosts=hosts,
            behind_tls_proxy=_env("ARCHIVE_BEHIND_TLS_PROXY") in ("1", "true", "yes"),
            transfer_valid_days=_int("ARCHIVE_TRANSFER_VALID_DAYS", 15),
            receipt_overdue_hours=_int("ARCHIVE_RECEIPT_OVERDUE_HOURS", 24),
            transfer_workdir=_env("ARCHIVE_TRANSFER_WORKDIR"),
            platform_url=_env("ARCHIVE_PLATFORM_URL"),
            platform_token=_env("ARCHIVE_PLATFORM_TOKEN") or _file(_env("ARCHIVE_PLATFORM_TOKEN_FILE")),
            platform_ca_file=_env("ARCHIVE_PLATFORM_CA_FILE"),
            platform_id_hash_key=_env("ARCHIVE_PLATFORM_ID_HASH_KEY").encode() or DEMO_PLATFORM_ID_HASH_KEY,
            platform_retry_seconds=_int("ARCHIVE_PLATFORM_RETRY_SECONDS", 2),
            platform_timeout_seconds=_int("ARCHIVE_PLATFORM_TIMEOUT_SECONDS", 10),
        )

    @property
    def transfer_dir(self) -> Path:
        return Path(self.transfer_workdir or Path(_env("DAGSTER_HOME", "dagster_home")) / "transfers")

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
