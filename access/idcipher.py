"""ID numbers at rest: encrypted by the application with AES-256-GCM under a configured key.

A stored value is `key id:base64(nonce | ciphertext)`, so keys rotate: new values use the
current key (the first of ARCHIVE_ID_KEYS), older ones decrypt with the key they name, and
`archive keys rotate-ids` re-encrypts every stored number under the current key. Lookups use
the keyed hash (catalog/idnumber.py), never the ciphertext.
"""

from __future__ import annotations

import base64
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from errors import IntegrityFailure, SetupError
from settings import Settings

_AAD = b"personnel-archive id_number v1 of "  # and the file number


class IdCipher:
    def __init__(self, current: str, keys: dict[str, bytes]) -> None:
        self.current = current
        self._aead = {kid: AESGCM(key) for kid, key in keys.items()}

    @classmethod
    def from_settings(cls, settings: Settings) -> IdCipher:
        return cls(settings.id_key_current, settings.id_keys)

    def encrypt(self, id_number: str, file_number: str) -> str:
        """Sealed for its file: moved to another file's row, it no longer decrypts."""
        nonce = os.urandom(12)
        sealed = self._aead[self.current].encrypt(nonce, id_number.encode(), _AAD + file_number.encode())
        return f"{self.current}:{base64.b64encode(nonce + sealed).decode()}"

    def key_of(self, stored: str) -> str:
        return stored.partition(":")[0]

    def decrypt(self, stored: str, file_number: str) -> str:
        kid, _, body = stored.partition(":")
        if kid not in self._aead:
            raise SetupError(f"身份证号所用密钥 {kid} 不在 ARCHIVE_ID_KEYS 中",
                             f"an ID number is encrypted under key {kid!r}, which ARCHIVE_ID_KEYS does not hold")
        raw = base64.b64decode(body)
        try:
            return self._aead[kid].decrypt(raw[:12], raw[12:], _AAD + file_number.encode()).decode()
        except InvalidTag as exc:
            raise IntegrityFailure("加密的身份证号已损坏或被篡改", "an encrypted ID number is damaged or was "
                                   "altered") from exc
