"""The ``kares`` command as a new user meets it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.conftest import _wipe
from tests.support import cli, live


def run_kares(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``python -m kares ARGS``, a real process (about two seconds of imports first):
    for what only a process shows. Everything else: ``tests.support.cli.run``."""
    return subprocess.run(
        [sys.executable, "-m", "kares", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **env},
        check=False,
    )


@pytest.mark.db_agnostic
def test_help_lists_every_command() -> None:
    # the console's way in, once (a real process); the rest in-process (tests/support/cli.py)
    r = run_kares("--help", env={})
    assert r.returncode == 0
    for cmd in ("serve", "migrate", "demo"):
        assert cmd in r.stdout
    r = cli.run("serve", "--help", env={})
    assert "--host" in r.stdout and "--port" in r.stdout


@pytest.mark.db_agnostic
def test_serve_with_workers_needs_redis_and_leaves_the_watch_port_to_one_process(
    tmp_path: Path,
) -> None:
    env = {"KARES_VAR_DIR": str(tmp_path / "var"), "KARES_REDIS_URL": ""}
    r = cli.run("serve", "--workers", "2", env=env)
    assert r.returncode == 2
    assert "needs KARES_REDIS_URL" in r.stderr
    r = cli.run(
        "serve",
        "--workers",
        "2",
        env={**env, "KARES_REDIS_URL": "redis://127.0.0.1:1/0", "KARES_WATCH_PORT": "5999"},
    )
    assert r.returncode == 2
    assert "watch port is served by one process" in r.stderr
    assert not (tmp_path / "var" / "kares.db").exists()  # refused before anything was made
    r = cli.run("serve", "--workers", "0", env=env)
    assert r.returncode == 2 and "between 1 and 64" in r.stderr


@pytest.fixture
def kares_env(tmp_path: Path, db_url: str) -> dict[str, str]:
    return live.kares_env(tmp_path / "var", db_url)


async def test_demo_families_seed_families_of_four_for_load_tests(
    kares_env: dict[str, str], db_url: str
) -> None:
    """`kares demo --families N --json`: N families of four, each member with a
    password, a token and a Matrix user id; a second run keeps them all."""
    from kares.app import create_app
    from kares.config import Settings

    env = {**kares_env, "KARES_SERVER_NAME": "kares.example"}

    def seed() -> list[dict]:
        r = cli.run("demo", "--families", "2", "--json", env=env)
        assert r.returncode == 0, r.stderr
        return list(json.loads(r.stdout)["families"])

    try:
        first = seed()
        assert [f["name"] for f in first] == ["Demo family 1", "Demo family 2"]
        members = [m for f in first for m in f["members"]]
        assert len(members) == 8 and len({m["account_id"] for m in members}) == 8
        for m in members:
            assert m["matrix_user"] == f"@{m['account_id']}:kares.example"
        assert seed() == first  # kept, tokens too
        r = cli.run("demo", "--families", "0", env=env)
        assert r.returncode == 0  # 0: the ordinary demo
        r = cli.run("demo", "--families", "99999", env=env)
        assert r.returncode == 2 and "--families" in r.stderr
        settings = Settings(
            var_dir=Path(env["KARES_VAR_DIR"]),
            database_url=env.get("KARES_DATABASE_URL", ""),
            data_keys=env.get("KARES_DATA_KEYS", ""),
            index_key=env.get("KARES_INDEX_KEY", ""),
        )
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="https://t") as c:
                for fam in first:
                    owner = fam["members"][0]
                    h = {"Authorization": f"Bearer {owner['token']}"}
                    r = await c.get(f"/api/v1/families/{fam['id']}", headers=h)
                    assert r.status_code == 200, r.text
                    ids = {x["account_id"] for x in r.json()["members"]}
                    assert ids == {m["account_id"] for m in fam["members"]}
                m = members[-1]
                r = await c.post(
                    "/api/v1/auth/password", json={"phone": m["phone"], "password": m["password"]}
                )
                assert r.status_code == 200, r.text
    finally:
        if db_url.startswith("postgresql"):
            await _wipe(db_url)


async def test_demo_is_idempotent_and_keeps_what_it_printed(
    kares_env: dict[str, str], db_url: str, tmp_path: Path
) -> None:
    """Each `scripts/serve` start runs the demo: a phone set up with what it
    printed must keep working. A re-run keeps every credential that still works,
    makes only what is missing, and says which."""
    from kares.app import create_app
    from kares.config import Settings

    var = Path(kares_env["KARES_VAR_DIR"])
    settings = Settings(
        var_dir=var,
        database_url=kares_env.get("KARES_DATABASE_URL", ""),
        data_keys=kares_env.get("KARES_DATA_KEYS", ""),
        index_key=kares_env.get("KARES_INDEX_KEY", ""),
    )
    fix = {"_type": "location", "lat": 31.23, "lon": 121.47, "tst": 1}

    def demo() -> dict:
        r = cli.run("demo", "--json", env=kares_env)
        assert r.returncode == 0, r.stderr
        return dict(json.loads(r.stdout))

    try:
        first = demo()
        members = first["members"]
        assert len(members) >= 3 and first["family_created"] is True
        for m in members:
            assert set(m) == {
                "name",
                "phone",
                "password",
                "account_id",
                "matrix_user",
                "token",
                "tracker",
                "caldav",
                "created",
            }
            assert m["matrix_user"] == f"@{m['account_id']}:localhost"
            assert set(m["tracker"]) == {"id", "kind", "username", "secret"}
            assert set(m["caldav"]) == {"url", "id", "username", "password"}
            assert m["caldav"]["url"].endswith("/dav/")
            assert m["created"] == ["account", "token", "owntracks", "caldav"]
        # the printed secrets are kept for the next run, readable by this user only
        kept = var / "demo-credentials.json"
        assert kept.stat().st_mode & 0o777 == 0o600
        second = demo()
        assert second["family_created"] is False
        assert [m["created"] for m in second["members"]] == [[]] * len(members)
        strip = [{k: v for k, v in m.items() if k != "created"} for m in members]
        assert [{k: v for k, v in m.items() if k != "created"} for m in second["members"]] == strip

        app = create_app(settings)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="https://t") as c:
                ids = set()
                for m in members:  # what the FIRST run printed
                    h = {"Authorization": f"Bearer {m['token']}"}
                    r = await c.get("/api/v1/me", headers=h)
                    assert r.status_code == 200, r.text
                    assert r.json()["name"] == m["name"]
                    ids.add(r.json()["id"])
                    # the demo's session and its CalDAV app password, listed with it
                    sessions = (await c.get("/api/v1/me/sessions", headers=h)).json()
                    assert sorted(x["kind"] == "caldav" for x in sessions) == [False, True]
                    cd = m["caldav"]
                    r = await c.request("PROPFIND", "/dav/", auth=(cd["username"], cd["password"]))
                    assert r.status_code == 207, r.text
                    t = m["tracker"]
                    r = await c.post("/owntracks", json=fix, auth=(t["username"], t["secret"]))
                    assert r.status_code == 200, r.text
                    assert r.headers["x-kares-refused"] == "fix.too_old"  # 1970 is past keeping
                    trackers = (await c.get("/api/v1/location/trackers", headers=h)).json()
                    assert [x["revoked"] for x in trackers] == [False]
                    r = await c.post(
                        "/api/v1/auth/password",
                        json={"phone": m["phone"], "password": m["password"]},
                    )
                    assert r.status_code == 200, r.text
                assert len(ids) == len(members)
                # one demo family, whatever the number of runs, with every member
                h = {"Authorization": f"Bearer {members[0]['token']}"}
                fams = await c.get("/api/v1/families", headers=h)
                assert [(f["name"], f["member_count"]) for f in fams.json()] == [
                    ("Li family", len(members) + 1)
                ]
                # the first member signs its demo token out; the second revokes its tracker
                assert (await c.post("/api/v1/auth/logout", headers=h)).status_code in (200, 204)
                h2 = {"Authorization": f"Bearer {members[1]['token']}"}
                tid = members[1]["tracker"]["id"]
                r = await c.delete(f"/api/v1/location/trackers/{tid}", headers=h2)
                assert r.status_code in (200, 204), r.text
                pid = members[1]["caldav"]["id"]
                r = await c.delete(f"/api/v1/caldav/passwords/{pid}", headers=h2)
                assert r.status_code == 204, r.text
        third = demo()["members"]
        assert [m["created"] for m in third] == [["token"], ["owntracks", "caldav"]] + [[]] * (
            len(members) - 2
        )
        assert third[0]["token"] != members[0]["token"]
        assert third[1]["tracker"] != members[1]["tracker"]
        assert third[1]["caldav"]["password"] != members[1]["caldav"]["password"]
        assert third[1]["token"] == members[1]["token"]
        assert third[2:] == second["members"][2:]
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="https://t") as c:
                h = {"Authorization": f"Bearer {third[0]['token']}"}
                assert (await c.get("/api/v1/me", headers=h)).status_code == 200
                t = third[1]["tracker"]
                r = await c.post("/owntracks", json=fix, auth=(t["username"], t["secret"]))
                assert r.status_code == 200, r.text
    finally:
        if db_url.startswith("postgresql"):
            await _wipe(db_url)


def test_demo_plain_output_says_how_to_sign_in(kares_env: dict[str, str], db_url: str) -> None:
    # the console's way in, once (a real process); the rest in-process (tests/support/cli.py)
    r = run_kares("demo", env={**kares_env, "KARES_PORT": "18100"})
    try:
        assert r.returncode == 0, r.stderr
        assert "password" in r.stdout and "token" in r.stdout and "+8613800000001" in r.stdout
        # the hints point where the server listens, not at a port it does not use
        assert "http://127.0.0.1:18100/owntracks" in r.stdout and ":8000" not in r.stdout
        r = cli.run("demo", "--url", "http://192.0.2.7:9000", env=kares_env)
        assert r.returncode == 0 and "http://192.0.2.7:9000/api/v1/me" in r.stdout
    finally:
        if db_url.startswith("postgresql"):
            import asyncio

            asyncio.run(_wipe(db_url))


@pytest.mark.db_agnostic
def test_migrate_command(tmp_path: Path) -> None:
    env = {"KARES_VAR_DIR": str(tmp_path / "v")}
    # the console's way in, once (a real process); the rest in-process (tests/support/cli.py)
    r = run_kares("migrate", env=env)
    assert r.returncode == 0, r.stderr
    from kares import migrations

    assert migrations.head_revision() in r.stdout
    assert (tmp_path / "v" / "kares.db").exists()


@pytest.mark.db_agnostic
def test_production_without_keys_is_a_clear_error(tmp_path: Path) -> None:
    r = cli.run("demo", env={"KARES_ENV": "production", "KARES_VAR_DIR": str(tmp_path)})
    assert r.returncode == 2
    assert "KARES_DATA_KEYS" in r.stderr


@pytest.mark.db_agnostic
def test_serve_runs_embedded_and_applies_migrations(tmp_path: Path) -> None:
    import socket
    import time

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "KARES_VAR_DIR": str(tmp_path / "var")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "kares", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        ready = None
        while time.monotonic() < deadline:
            try:
                ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2)
                break
            except httpx.TransportError:
                time.sleep(0.2)
        assert ready is not None, "server did not start"
        assert ready.status_code == 200 and ready.json()["status"] == "ready"
        assert (tmp_path / "var" / "kares.db").exists()
        r = httpx.post(
            f"http://127.0.0.1:{port}/api/v1/auth/sms/send", json={"phone": "13812345678"}
        )
        assert r.status_code == 202
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=20)
    # the console SMS sender shows the code, with the number masked everywhere
    assert "Your verification code is" in out
    assert "+86 138****5678" in out
    assert "13812345678" not in out


def test_policy_check_compares_with_published_versions(
    kares_env: dict[str, str], db_url: str, tmp_path: Path
) -> None:
    import asyncio

    import yaml

    from kares.privacy import catalog as catalog_mod

    try:
        assert cli.run("demo", "--json", env=kares_env).returncode == 0  # publishes
        ok = cli.run("policy", "check", env=kares_env)
        assert ok.returncode == 0, ok.stderr
        assert "already served" in ok.stdout
        data = yaml.safe_load(catalog_mod.DEFAULT_PATH.read_text(encoding="utf-8"))
        data["categories"]["calls.records"]["retention"] = {"days": 400, "then": "delete"}
        changed = tmp_path / "changed.yaml"
        changed.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
        r = cli.run("policy", "check", "--catalog", str(changed), env=kares_env)
        assert r.returncode == 2
        assert "already published" in r.stderr
        data["policy"]["version"] = "2099-01-01"
        data["policy"]["significant"] = False
        changed.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
        r = cli.run("policy", "check", "--catalog", str(changed), env=kares_env)
        assert r.returncode == 2
        assert "significant" in r.stderr
        data["policy"]["significant"] = True
        changed.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
        r = cli.run("policy", "check", "--catalog", str(changed), env=kares_env)
        assert r.returncode == 0, r.stderr
        assert "category:calls.records" in r.stdout and "function:calls" in r.stdout
    finally:
        if db_url.startswith("postgresql"):
            asyncio.run(_wipe(db_url))
