"""Field encryption and keyed hashes for personal information at rest.

* ``encrypt``/``decrypt``: AES-256-GCM with a key ring. The ciphertext names
  the key that made it (``v1.<kid>.<base64>``), so keys can be rotated: new
  writes use the first key, old rows stay readable until re-encrypted.
* ``blind_index``: HMAC-SHA256 under a separate key, so equality look-ups
  (find an account by phone number) work without decrypting every row.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM


class KeyError_(ValueError):
    pass


@dataclass(frozen=True)
class KeyRing:
    keys: dict[str, bytes]
    active: str
    index_key: bytes

    @classmethod
    def parse(cls, data_keys: str, index_key: str) -> KeyRing:
        keys: dict[str, bytes] = {}
        order: list[str] = []
        for part in data_keys.split(","):
            part = part.strip()
            if not part:
                continue
            kid, sep, b64 = part.partition(":")
            if not sep or not kid.isalnum():
                raise KeyError_(f"data key entry {kid!r} must look like kid:base64key")
            raw = base64.b64decode(b64)
            if len(raw) != 32:
                raise KeyError_(f"data key {kid!r} must be 32 bytes (AES-256)")
            keys[kid] = raw
            order.append(kid)
        if not order:
            raise KeyError_("no data keys configured")
        ikey = base64.b64decode(index_key)
        if len(ikey) < 32:
            raise KeyError_("index key must be at least 32 bytes")
        return cls(keys=keys, active=order[0], index_key=ikey)


_ring: KeyRing | None = None


def install(ring: KeyRing) -> None:
    global _ring
    _ring = ring


def ring() -> KeyRing:
    if _ring is None:
        raise RuntimeError("crypto key ring not installed (kares.crypto.install)")
    return _ring


def encrypt(plaintext: str, *, context: str) -> str:
    """Encrypt; ``context`` (e.g. table.column) is bound as associated data."""
    r = ring()
    nonce = secrets.token_bytes(12)
    ct = AESGCM(r.keys[r.active]).encrypt(nonce, plaintext.encode(), context.encode())
    return f"v1.{r.active}.{base64.urlsafe_b64encode(nonce + ct).decode()}"


def decrypt(token: str, *, context: str) -> str:
    r = ring()
    version, kid, b64 = token.split(".", 2)
    if version != "v1" or kid not in r.keys:
        raise KeyError_(f"cannot decrypt: unknown key {kid!r}")
    blob = base64.urlsafe_b64decode(b64)
    return AESGCM(r.keys[kid]).decrypt(blob[:12], blob[12:], context.encode()).decode()


def seal(data: bytes, *, context: str) -> bytes:
    """``encrypt`` for bytes, without base64: ``b"\\x01" + len(kid) + kid + nonce +
    ciphertext``. For packed arrays (a day of health samples), where a text token
    would cost a third more space and a copy."""
    r = ring()
    kid = r.active.encode()
    nonce = secrets.token_bytes(12)
    ct = AESGCM(r.keys[r.active]).encrypt(nonce, data, context.encode())
    return b"\x01" + bytes([len(kid)]) + kid + nonce + ct


def unseal(blob: bytes, *, context: str) -> bytes:
    r = ring()
    if not blob or blob[0] != 1:
        raise KeyError_("cannot decrypt: unknown sealed format")
    n = blob[1]
    kid = blob[2 : 2 + n].decode()
    if kid not in r.keys:
        raise KeyError_(f"cannot decrypt: unknown key {kid!r}")
    rest = blob[2 + n :]
    return AESGCM(r.keys[kid]).decrypt(rest[:12], rest[12:], context.encode())


def key_id_of(token: str) -> str:
    return token.split(".", 2)[1]


def blind_index(value: str, *, purpose: str) -> str:
    mac = hmac.new(ring().index_key, f"{purpose}\x00{value}".encode(), hashlib.sha256)
    return mac.hexdigest()


def _index_states(purpose: str) -> tuple[Any, Any]:
    """The index key's HMAC-SHA256 states (RFC 2104): the inner one past
    ``K ^ ipad`` and the purpose, the outer one past ``K ^ opad``; a value's
    digest continues copies of them."""
    key = ring().index_key
    block = hashlib.sha256().block_size
    if len(key) > block:
        key = hashlib.sha256(key).digest()
    key = key.ljust(block, b"\x00")
    inner = hashlib.sha256(bytes(b ^ 0x36 for b in key))
    inner.update(f"{purpose}\x00".encode())
    outer = hashlib.sha256(bytes(b ^ 0x5C for b in key))
    return inner, outer


def blind_digests(values: Iterable[str], *, purpose: str) -> list[bytes]:
    """``blind_index`` of many values, as raw digests (``d.hex()`` is the
    value's blind index), for a batch (a health import's record keys).

    The same HMAC-SHA256 (RFC 2104: ``H(K ^ opad || H(K ^ ipad || message))``),
    with the key's two padded blocks and the purpose hashed once and each value
    continuing copies of those states: a fresh ``hmac.new`` per value costs
    more than the value's own hashing. ``tests/test_health_batch.py`` holds it
    to ``blind_index``."""
    inner, outer = _index_states(purpose)
    icopy, ocopy = inner.copy, outer.copy
    out: list[bytes] = []
    add = out.append
    for value in values:
        i = icopy()
        i.update(value.encode())
        o = ocopy()
        o.update(i.digest())
        add(o.digest())
    return out


def blind_digests_of_pairs(
    firsts: Sequence[str], seconds: Sequence[str], *, purpose: str, sep: str = "\x00"
) -> list[bytes]:
    """``blind_digests`` of ``f"{a}{sep}{b}"`` for each pair (a, b): the same
    digests. The first items repeat (a health import's sources), so the keyed
    state is carried past each distinct ``a{sep}`` once, and each pair only
    hashes its ``b``: no string is joined per pair."""
    if len(firsts) != len(seconds):
        raise ValueError("as many first items as second items")
    inner, outer = _index_states(purpose)
    ocopy = outer.copy
    states: dict[str, Callable[[], Any]] = {}
    for a in set(firsts):
        state = inner.copy()
        state.update(f"{a}{sep}".encode())
        states[a] = state.copy
    out: list[bytes] = []
    add = out.append
    for a, b in zip(firsts, seconds, strict=True):
        i = states[a]()
        i.update(b.encode())
        o = ocopy()
        o.update(i.digest())
        add(o.digest())
    return out


def token_hash(token: str) -> str:
    """Hash of a high-entropy secret (session token) for storage and look-up."""
    return hashlib.sha256(token.encode()).hexdigest()


def constant_time_equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())
