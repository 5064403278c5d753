"""Ansible Vault's format 1.1 (AES256), written without Ansible: PBKDF2-HMAC-SHA256 (10000
rounds) gives the AES-256-CTR key, the HMAC-SHA256 key and the counter; the plaintext is
PKCS#7 padded; the envelope is hex of "salt\\nhmac\\nciphertext", hexed again in 80-column
lines under the header.  `ansible-vault view` reads it (tests/e2e/test_ansible_e2e.py)."""

from __future__ import annotations

import binascii
import hmac
import os
from hashlib import sha256

HEADER = "$ANSIBLE_VAULT;1.1;AES256"


def _keys(password: bytes, salt: bytes) -> tuple[bytes, bytes, bytes]:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

    derived = PBKDF2HMAC(algorithm=hashes.SHA256(), length=80, salt=salt,
                         iterations=10000).derive(password)
    return derived[:32], derived[32:64], derived[64:80]


def encrypt(plaintext: str, password: str) -> str:
    from cryptography.hazmat.primitives import padding
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    salt = os.urandom(32)
    key, hkey, iv = _keys(password.encode("utf-8"), salt)
    padder = padding.PKCS7(128).padder()
    data = padder.update(plaintext.encode("utf-8")) + padder.finalize()
    enc = Cipher(algorithms.AES(key), modes.CTR(iv)).encryptor()
    ct = enc.update(data) + enc.finalize()
    mac = hmac.new(hkey, ct, sha256).hexdigest()
    inner = b"\n".join([binascii.hexlify(salt), mac.encode(), binascii.hexlify(ct)])
    body = binascii.hexlify(inner).decode()
    return HEADER + "\n" + "\n".join(body[i:i + 80] for i in range(0, len(body), 80)) + "\n"


def decrypt(text: str, password: str) -> str:
    """The inverse (for the tests and a check right after writing)."""
    from cryptography.hazmat.primitives import padding
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    lines = text.strip().splitlines()
    if not lines or lines[0].strip() != HEADER:
        raise ValueError("not an Ansible Vault 1.1 AES256 file")
    salt_hex, mac, ct_hex = binascii.unhexlify("".join(lines[1:])).split(b"\n")
    key, hkey, iv = _keys(password.encode("utf-8"), binascii.unhexlify(salt_hex))
    ct = binascii.unhexlify(ct_hex)
    if not hmac.compare_digest(hmac.new(hkey, ct, sha256).hexdigest().encode(), mac):
        raise ValueError("wrong vault password (HMAC mismatch)")
    dec = Cipher(algorithms.AES(key), modes.CTR(iv)).decryptor()
    data = dec.update(ct) + dec.finalize()
    unpad = padding.PKCS7(128).unpadder()
    return (unpad.update(data) + unpad.finalize()).decode("utf-8")
