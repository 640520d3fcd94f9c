"""An agency's Ed25519 key, which signs transfer records and receipts over the canonical JSON
(RFC 8785) of everything but their `signature` block; `signature_valid` checks one with a public
key the caller takes from its agency registry (transfer/verify.py, transfer/receipt.py).

(GB/T 38541 names SM2; Ed25519 stands in until an SM2 library is chosen: the record carries
its algorithm, so the switch needs no change of format.)
"""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path

import rfc8785
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from errors import SetupError


def canonical_json(data: dict) -> bytes:
    """RFC 8785: the same value gives the same bytes in any conforming implementation."""
    return rfc8785.dumps(data)


def signed_bytes(doc: dict) -> bytes:
    """What a signature covers: the document without its `signature` block, RFC 8785."""
    return canonical_json({k: v for k, v in doc.items() if k != "signature"})


def signature_valid(doc: dict, public_key: bytes) -> bool:
    sig = doc.get("signature") or {}
    if sig.get("alg") != "Ed25519":
        return False
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(base64.b64decode(sig.get("value", "")),
                                                                signed_bytes(doc))
        return True
    except (InvalidSignature, ValueError):
        return False


def write_private(path: Path, data: bytes) -> None:
    """Writes a secret file readable by its owner only, atomically: created 0600 under a
    temporary name (never readable by others, not even for a moment), then renamed; a file
    already there is kept (two processes starting at once agree on one key)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, path)  # fails if another process made the file first
        except FileExistsError:
            pass
    finally:
        tmp.unlink(missing_ok=True)


class Signer:
    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self.key = private_key
        raw = self.public_bytes()
        self.key_id = hashlib.sha256(raw).hexdigest()[:16]

    @classmethod
    def generate(cls) -> Signer:
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_pem(cls, pem: bytes) -> Signer:
        try:
            key = serialization.load_pem_private_key(pem, password=None)
        except (ValueError, TypeError) as exc:  # not PEM, damaged, or protected by a password
            raise SetupError("签名密钥无法读取（应为未加密的 PEM 格式 Ed25519 私钥）",
                             f"the signing key cannot be read ({exc}); it must be an unencrypted PEM "
                             "Ed25519 private key") from exc
        if not isinstance(key, Ed25519PrivateKey):
            raise SetupError("签名密钥必须是 Ed25519 私钥", "the signing key must be an Ed25519 private key")
        return cls(key)

    @classmethod
    def from_pem_or_file(cls, pem: str, path: Path, generate: bool = True) -> Signer:
        """The key `pem` (ARCHIVE_SIGNING_KEY) if set, else the key file, created on first use
        where `generate` (the demo; production configures its key)."""
        if pem:
            return cls.from_pem(pem.encode())
        if not path.exists():
            if not generate:
                raise SetupError("未配置签名密钥 ARCHIVE_SIGNING_KEY", "no signing key: set ARCHIVE_SIGNING_KEY")
            pem = Ed25519PrivateKey.generate().private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
            write_private(path, pem)
        return cls.from_pem(path.read_bytes())

    def public_bytes(self) -> bytes:
        return self.key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)

    def public_key_b64(self) -> str:
        return base64.b64encode(self.public_bytes()).decode()

    def sign(self, record: dict) -> dict:
        """The record with a `signature` block over the canonical JSON of everything else; it
        names the key by id: the receiver takes the key from its registry, not from the record."""
        sig = self.key.sign(signed_bytes(record))
        body = {k: v for k, v in record.items() if k != "signature"}
        return {**body, "signature": {"alg": "Ed25519", "key_id": self.key_id, "value": base64.b64encode(sig).decode()}}
