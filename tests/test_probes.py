"""Issue 12's probes, replayed against a live ``kares serve`` on each database tier.

The probes themselves are in ``tests/support/probes.py``; ``bench/probes.py`` runs
them by hand with larger bursts. Here they run once each, against one server
started for the test, and the test fails with the table of what did not hold.
"""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.support import probes
from tests.support.fakes import FakeSmsGateway
from tests.support.live import kares_env, live_server


def live_env(tmp_path: Path, db_url: str, sms: FakeSmsGateway) -> dict[str, str]:
    return kares_env(
        tmp_path / "var",
        db_url,
        KARES_SMS_SENDER="http",
        KARES_SMS_HTTP_URL=sms.base + "/send",
        KARES_SMS_HTTP_TOKEN="sms-secret",
        KARES_TRUSTED_PROXIES="127.0.0.1",
    )


async def test_the_probes_of_step_6_hold_on_a_live_server(
    tmp_path: Path, db_url: str, sms: FakeSmsGateway
) -> None:
    with live_server(live_env(tmp_path, db_url, sms), tmp_path, watch=True) as live:
        async with httpx.AsyncClient(base_url=live.url, timeout=30) as client:
            ctx = probes.Ctx(live, client, sms)
            outcomes = await probes.run(ctx, budget_s=150)
        assert live.alive(), live.log()[-3000:]
    assert len(outcomes) == len(probes.PROBES)
    failed = [o for o in outcomes if not o.ok]
    assert not failed, "\n" + probes.table(outcomes)
