"""An attachment uploaded and never sent is deleted KARES_ATTACHMENT_UNSENT_HOURS
(24 by default) after its upload, by a durable job queued in the upload's own
transaction; one that a message carries stays, and so does one sent at the last
moment. Run on both databases, with the service's clock moved on."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from kares import clock, jobs
from kares.messaging import attachments
from tests.conftest import query
from tests.support.audio import webm
from tests.support.watch import settings_overrides
from tests.test_avatar import jpeg_with_metadata
from tests.test_families import h, new_family, person
from tests.test_messaging import ATTACH, OWNER, amr, send

__all__ = ["settings_overrides"]  # a fixture that takes parameters, from tests.support.watch


async def upload(
    client: httpx.AsyncClient, me: dict[str, Any], kind: str, raw: bytes
) -> dict[str, Any]:
    r = await client.post(
        ATTACH, params={"kind": kind}, files={"file": ("f", raw, "x/y")}, headers=h(me)
    )
    assert r.status_code == 201, r.text
    return dict(r.json())


async def kept(db: Any) -> list[str]:
    rows = await query(db, "SELECT id FROM message_attachments ORDER BY id")
    return [str(r["id"]) for r in rows]


async def forget_jobs(db: Any) -> list[dict[str, Any]]:
    return await query(db, "SELECT status FROM jobs WHERE kind = :k", k=attachments.FORGET_UNSENT)


async def test_an_unsent_attachment_goes_after_a_day_and_a_sent_one_stays(
    client: httpx.AsyncClient, sms: Any, app: Any, db: Any
) -> None:
    rt = app.state.runtime
    owner = await person(client, sms, OWNER, "Wang Fang")
    fid = await new_family(client, owner)
    image = await upload(client, owner, "image", jpeg_with_metadata())
    voice = await upload(client, owner, "voice", amr(2))
    sent = await upload(client, owner, "voice", webm(2))
    r = await send(client, owner, fid, kind="voice", attachment_id=sent["id"])
    assert r.status_code == 201, r.text
    assert len(await forget_jobs(db)) == 3
    clock.advance(24 * 3600 - 60)
    await jobs.run_due(rt)
    assert await kept(db) == [image["id"], voice["id"], sent["id"]]
    # sent just before its time: it stays with its message
    r = await send(client, owner, fid, kind="image", attachment_id=image["id"])
    assert r.status_code == 201, r.text
    clock.advance(120)
    await jobs.run_due(rt)
    assert await kept(db) == [image["id"], sent["id"]]
    r = await client.get(f"{ATTACH}/{voice['id']}", headers=h(owner))
    assert r.status_code == 404 and r.json()["code"] == "attachment.not_found"
    got = await client.get(f"{ATTACH}/{sent['id']}", headers=h(owner))
    assert got.status_code == 200 and got.content == webm(2)
    assert await forget_jobs(db) == []  # each ran once, and is done
    # sending the one that went: a clear 404, nothing stored
    r = await send(client, owner, fid, kind="voice", attachment_id=voice["id"])
    assert r.status_code == 404 and r.json()["code"] == "attachment.not_found"


@pytest.mark.parametrize("settings_overrides", [{"attachment_unsent_hours": 2}], indirect=True)
async def test_the_time_is_a_setting(
    client: httpx.AsyncClient, sms: Any, app: Any, db: Any
) -> None:
    owner = await person(client, sms, OWNER, "Wang Fang")
    image = await upload(client, owner, "image", jpeg_with_metadata())
    clock.advance(3600)
    await jobs.run_due(app.state.runtime)
    assert await kept(db) == [image["id"]]
    clock.advance(3601)
    await jobs.run_due(app.state.runtime)
    assert await kept(db) == []
