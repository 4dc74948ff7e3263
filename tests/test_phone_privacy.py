"""The phone number is personal information: encrypted at rest, found by a keyed
hash, and never written to logs in full (policy 4.2)."""

from __future__ import annotations

import base64
import logging

import httpx
import pytest
from sqlalchemy import text

from kares import crypto
from kares.logs import PhoneMaskFilter, mask_phone, mask_phones_in
from tests.conftest import PHONE, sign_up

DIGITS = PHONE.lstrip("+")


async def _all_stored_text(db) -> str:
    """Every value in every table, as the raw database returns it."""
    from kares.domains import metadata

    chunks = []
    async with db.engine.connect() as conn:
        for t in metadata.sorted_tables:
            for row in (await conn.execute(text(f"SELECT * FROM {t.name}"))).all():
                chunks.extend(str(v) for v in row)
    return "\n".join(chunks)


async def test_phone_is_not_stored_in_clear(client: httpx.AsyncClient, sms, db) -> None:
    await sign_up(client, sms)
    raw = await _all_stored_text(db)
    assert DIGITS not in raw
    assert "13812345678" not in raw
    async with db.engine.connect() as conn:
        stored, index = (await conn.execute(text("SELECT phone, phone_hash FROM accounts"))).one()
    assert stored.startswith("v1.t1.")
    assert crypto.decrypt(stored, context="accounts.phone") == PHONE
    assert index == crypto.blind_index(PHONE, purpose="phone")


async def test_ciphertext_is_bound_to_its_column(client: httpx.AsyncClient, sms, db) -> None:
    await sign_up(client, sms)
    async with db.engine.connect() as conn:
        stored = (await conn.execute(text("SELECT phone FROM accounts"))).scalar_one()
    with pytest.raises(Exception):
        crypto.decrypt(stored, context="accounts.name")


@pytest.mark.db_agnostic
def test_key_rotation_keeps_old_rows_readable(monkeypatch: pytest.MonkeyPatch) -> None:
    # puts back whatever key ring was installed, or none (this test may run first)
    monkeypatch.setattr(crypto, "_ring", None)
    k1 = "a1:" + base64.b64encode(b"1" * 32).decode()
    k2 = "b2:" + base64.b64encode(b"2" * 32).decode()
    idx = base64.b64encode(b"i" * 32).decode()
    crypto.install(crypto.KeyRing.parse(k1, idx))
    old = crypto.encrypt("+8613800000000", context="accounts.phone")
    crypto.install(crypto.KeyRing.parse(f"{k2},{k1}", idx))  # new key first
    new = crypto.encrypt("+8613800000000", context="accounts.phone")
    assert crypto.key_id_of(old) == "a1" and crypto.key_id_of(new) == "b2"
    assert crypto.decrypt(old, context="accounts.phone") == "+8613800000000"
    assert crypto.decrypt(new, context="accounts.phone") == "+8613800000000"


@pytest.mark.db_agnostic
def test_bad_key_configuration_is_refused() -> None:
    idx = base64.b64encode(b"i" * 32).decode()
    for bad in ("", "nokey", "k1:" + base64.b64encode(b"short").decode()):
        with pytest.raises(crypto.KeyError_):
            crypto.KeyRing.parse(bad, idx)


@pytest.mark.db_agnostic
def test_production_refuses_generated_keys(tmp_path) -> None:
    from kares.config import ConfigError, Settings, resolve_keys

    with pytest.raises(ConfigError):
        resolve_keys(Settings(env="production", var_dir=tmp_path, data_keys="", index_key=""))
    assert not (tmp_path / "dev-keys.json").exists()
    # development generates once and then reuses
    dev = Settings(env="development", var_dir=tmp_path, data_keys="", index_key="")
    assert resolve_keys(dev) == resolve_keys(dev)
    assert oct((tmp_path / "dev-keys.json").stat().st_mode & 0o777) == "0o600"


@pytest.mark.db_agnostic
@pytest.mark.parametrize(
    ("e164", "masked"),
    [("+8613812341234", "+86 138****1234"), ("+447911123456", "+44 791****3456")],
)
def test_mask_phone(e164: str, masked: str) -> None:
    assert mask_phone(e164) == masked


@pytest.mark.db_agnostic
def test_mask_in_free_text() -> None:
    line = "send to +8613812341234 failed; retry 13812341234 at 2026-11-27 12:00:01"
    out = mask_phones_in(line)
    assert "13812341234" not in out
    assert "+86 138****1234" in out
    assert "2026-11-27 12:00:01" in out


async def test_logs_never_carry_the_full_number(
    client: httpx.AsyncClient, sms, caplog: pytest.LogCaptureFixture
) -> None:
    root = logging.getLogger()
    flt = PhoneMaskFilter()
    caplog.handler.addFilter(flt)
    caplog.set_level(logging.DEBUG)
    try:
        await sign_up(client, sms)
        sms.fail_with = 500
        await client.post("/api/v1/auth/sms/send", json={"phone": PHONE})
        logging.getLogger("kares.test").info("user %s did a thing", PHONE)
    finally:
        caplog.handler.removeFilter(flt)
    text_out = caplog.text
    assert "138****5678" in text_out
    assert DIGITS not in text_out and "13812345678" not in text_out
    assert root is logging.getLogger()


@pytest.mark.db_agnostic
def test_tracebacks_are_masked_too() -> None:
    import io

    buf = io.StringIO()
    handler = logging.StreamHandler(buf)
    handler.addFilter(PhoneMaskFilter())
    log = logging.getLogger("kares.test.traceback")
    log.addHandler(handler)
    try:
        try:
            raise ValueError(f"cannot reach {PHONE}")
        except ValueError:
            log.exception("failed for %s", PHONE)
    finally:
        log.removeHandler(handler)
    out = buf.getvalue()
    assert "ValueError" in out and "Traceback" in out
    assert DIGITS not in out
    assert out.count("+86 138****5678") == 2
