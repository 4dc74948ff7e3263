"""The ``kares`` command: serve, worker, migrate, demo, policy, retention, stats, rights,
staff, backup, health."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from kares import __version__


def _cmd_serve(args: argparse.Namespace) -> int:
    import gc

    import uvicorn

    from kares.app import create_app
    from kares.config import get_settings
    from kares.logs import setup_logging

    settings = get_settings()
    if args.watch_port is not None:
        settings = settings.model_copy(update={"watch_port": args.watch_port})
    setup_logging(settings.log_level)
    if args.workers > 1:
        return _serve_workers(args, settings)
    app = create_app(settings, migrate_embedded=not args.no_migrate)
    # What was imported and built so far lives as long as the process: keep it out of
    # the garbage collector's full passes, which walk every tracked object and pause
    # every request while they do (bench/README.md, bench_streams.py)
    gc.freeze()
    uvicorn.run(app, **_uvicorn_options(args, settings))
    return 0


def _uvicorn_options(args: argparse.Namespace, settings: Any) -> dict[str, Any]:
    """How ``kares serve`` runs uvicorn, with one process or several."""
    from kares.httpserver import HttpProtocol

    return {
        "host": args.host or settings.host,
        "port": args.port or settings.port,
        "log_config": None,
        "proxy_headers": False,
        "server_header": False,
        # the app writes the access log (kares.logs.AccessLog); the protocol writes
        # an answer's head and body at once (kares.httpserver)
        "access_log": False,
        "http": HttpProtocol,
        # /api/v1/ws: a frame over the app's cap gets an error event, one over 1 MiB
        # is not read at all (closed 1009); the protocol pings every 20 s and
        # closes a peer that does not answer within 20 s (docs/MESSAGING.md)
        "ws_max_size": 1024 * 1024,
        "ws_ping_interval": 20.0,
        "ws_ping_timeout": 20.0,
    }


def _serve_workers(args: argparse.Namespace, settings: Any) -> int:
    """``kares serve --workers N``: N processes answering on one port. Each runs the
    whole app (its jobs runner too: jobs are claimed in the database); what one
    commits wakes the others' streams through Redis, so several processes need
    KARES_REDIS_URL. The watch port stays with a single process (a watch's TCP
    session and the commands for it live in the process it connected to)."""
    import uvicorn

    if not settings.redis_url:
        print(
            "kares serve: --workers above 1 needs KARES_REDIS_URL: a change committed in "
            "one process must wake the live streams held by the others (docs/ARCHITECTURE.md, "
            '"Several processes")',
            file=sys.stderr,
        )
        return 2
    if settings.watch_port:
        print(
            "kares serve: the watch port is served by one process: run it in a `kares serve "
            "--workers 1 --watch-port P` of its own beside the workers",
            file=sys.stderr,
        )
        return 2
    # once, before the workers: they would otherwise migrate and publish the policy
    # version side by side at start
    if not args.no_migrate and settings.is_embedded_db:
        from kares import migrations

        migrations.upgrade(settings.effective_database_url)
    asyncio.run(_publish_policy(settings))
    uvicorn.run(
        "kares.app:worker_app",
        factory=True,
        workers=args.workers,
        **_uvicorn_options(args, settings),
    )
    return 0


async def _publish_policy(settings: Any) -> None:
    from kares.privacy import service as privacy
    from kares.runtime import Runtime

    rt = Runtime.build(settings)
    try:
        await privacy.sync_at_start(rt)
    finally:
        await rt.close()


async def _worker(once: bool) -> int:
    import signal

    from kares import domains, jobs, livebus
    from kares.config import get_settings
    from kares.runtime import Runtime

    assert domains.metadata.tables  # every domain's job handlers are registered

    settings = get_settings()
    rt = Runtime.build(settings)
    bridge = None
    try:
        if not await _migrated(rt):
            return 2
        # with Redis, what jobs commit wakes the sockets of the serving processes, and
        # a push asks whether the device holds a socket in any of them
        bridge = await livebus.attach(settings.redis_url, settings.live_catchup_seconds)
        if once:
            stats = await jobs.run_due(rt)
            print(
                f"ran {stats.ran} jobs: {stats.done} done, {stats.retried} to retry, "
                f"{stats.deferred} held, {stats.dead} gave up"
            )
            return 0
        worker = jobs.Worker(rt).start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        print(f"kares worker {worker.name} running; Ctrl-C to stop", file=sys.stderr)
        await stop.wait()
        await worker.stop()
        return 0
    finally:
        await livebus.detach(bridge)
        await rt.close()


async def _migrated(rt: Any) -> bool:
    from kares import migrations

    current = await migrations.current_revision(rt.db.engine)
    if current != migrations.head_revision():
        print(
            f"kares: the database is at migration {current}, not "
            f"{migrations.head_revision()}: run `kares migrate` first",
            file=sys.stderr,
        )
        return False
    return True


def _cmd_retention(args: argparse.Namespace) -> int:
    from kares.config import get_settings
    from kares.logs import setup_logging

    setup_logging(get_settings().log_level)
    return asyncio.run(_retention(args))


async def _retention(args: argparse.Namespace) -> int:
    from kares import domains
    from kares.config import get_settings
    from kares.retention import commands
    from kares.runtime import Runtime

    assert domains.metadata.tables  # retention walks every domain's tables
    rt = Runtime.build(get_settings())
    try:
        if not await _migrated(rt):
            return 2
        out, err = sys.stdout, sys.stderr
        match args.retention_command:
            case "report":
                return await commands.report(rt, out)
            case "run":
                return await commands.run(rt, out)
            case "hold":
                return await commands.hold(rt, out, err, phone=args.phone, reason=args.reason)
            case _:
                return await commands.release(rt, out, err, phone=args.phone)
    finally:
        await rt.close()


def _cmd_worker(args: argparse.Namespace) -> int:
    from kares.config import get_settings
    from kares.logs import setup_logging

    setup_logging(get_settings().log_level)
    return asyncio.run(_worker(args.once))


def _cmd_migrate(_args: argparse.Namespace) -> int:
    from kares import migrations
    from kares.config import get_settings

    settings = get_settings()
    migrations.upgrade(settings.effective_database_url)
    print(f"database at migration {migrations.head_revision()}")
    return 0


DEMO_MEMBERS = (
    ("Li Wei", "+8613800000001", "Kares-demo-1"),
    ("Wang Fang", "+8613800000002", "Kares-demo-2"),
    ("Li Xiaoming", "+8613800000003", "Kares-demo-3"),
    ("Zhang Lan", "+8613800000004", "Kares-demo-4"),
)


DEMO_SECRETS = "demo-credentials.json"


def _read_demo_secrets(path: Path) -> dict[str, Any]:
    """What the last run printed, by phone number (nothing if the file is gone or
    unreadable: then everything is made anew)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return {m["phone"]: m for m in data.get("members", []) if isinstance(m, dict) and "phone" in m}


def _write_demo_secrets(path: Path, members: list[dict[str, Any]]) -> None:
    """Keep the printed secrets for the next run, readable by this user only
    (written to a new file made 0600, then moved over the old one)."""
    import os

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        by_phone = {m["phone"]: m for m in members}  # the newest record of each number
        keep = [{k: v for k, v in m.items() if k != "created"} for m in by_phone.values()]
        json.dump({"members": keep}, f, indent=2)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


@asynccontextmanager
async def _demo_runtime(
    made: list[dict[str, Any]],
) -> AsyncIterator[tuple[Any, dict[str, Any]]]:
    """The demo's set-up, shared by ``demo`` and ``demo --families``: the database
    migrated, a runtime with the policy published, and what the last run printed
    (by phone). The members a run appends to ``made`` are kept for the next run."""
    from kares import domains, migrations
    from kares.config import get_settings
    from kares.privacy import service as privacy
    from kares.runtime import Runtime

    settings = get_settings()
    assert domains.metadata.tables  # every domain and its hooks are registered
    await asyncio.to_thread(migrations.upgrade, settings.effective_database_url)
    rt = Runtime.build(settings)
    secrets_path = settings.var_dir / DEMO_SECRETS
    before = _read_demo_secrets(secrets_path)
    try:
        await privacy.sync_at_start(rt)
        yield rt, before
    finally:
        await rt.close()
    _write_demo_secrets(secrets_path, [*before.values(), *made])


async def _demo_member(
    s: Any, rt: Any, before: dict[str, Any], name: str, phone: str, password: str
) -> tuple[Any, dict[str, Any]]:
    """A demo member made or kept (its token kept while it works), and what is
    printed of it."""
    from kares.accounts import service
    from kares.protocols.matrix import ids as matrix_ids

    member = await service.demo_member(
        s, rt, phone=phone, name=name, password=password, token=before.get(phone, {}).get("token")
    )
    return member, {
        "name": name,
        "phone": phone,
        "password": password,
        "account_id": member.account.id,
        "matrix_user": matrix_ids.user_id(member.account.id, rt.settings.server_name),
        "token": member.token,
    }


async def _demo() -> tuple[list[dict[str, Any]], bool]:
    """Make what is missing of the demo (members, their tokens, OwnTracks
    credentials and CalDAV app passwords, the family) and keep what still works;
    returns the members, each with what this run created, and whether the family
    was created."""
    from kares.protocols.caldav import passwords as caldav_passwords

    out: list[dict[str, Any]] = []
    async with _demo_runtime(out) as (rt, before), rt.db.sessions() as s:
        accounts = []
        for name, phone, password in DEMO_MEMBERS:
            member, row = await _demo_member(s, rt, before, name, phone, password)
            accounts.append(member.account)
            last = before.get(phone, {}).get("tracker")
            tracker, made = await _demo_tracker(s, rt, member.account.id, last)
            row["tracker"] = tracker
            caldav, cal_made = await caldav_passwords.demo(
                s, rt, member.account.id, before.get(phone, {}).get("caldav")
            )
            row["caldav"] = caldav
            row["created"] = [
                *member.created,
                *(["owntracks"] if made else []),
                *(["caldav"] if cal_made else []),
            ]
            out.append(row)
        _, family_created = await _demo_family(s, rt, accounts)
    return out, family_created


def demo_family_phone(family: int, member: int) -> str:
    """The phone number of member ``member`` (1-4) of demo family ``family``."""
    return f"+86139{family:04d}{member:04d}"


DEMO_FAMILY_SIZE = 4
DEMO_FAMILIES_MAX = 2500


async def _demo_families(n: int) -> list[dict[str, Any]]:
    """``n`` demo families of four (for benchmarks and load tests): each member
    with a password, a bearer token and a Matrix user id; the first owns the
    family. Kept as they are on the next run, like the demo itself."""
    out: list[dict[str, Any]] = []
    made: list[dict[str, Any]] = []
    async with _demo_runtime(made) as (rt, before):
        for f in range(1, n + 1):
            async with rt.db.sessions() as s:
                accounts, members = [], []
                for m in range(1, DEMO_FAMILY_SIZE + 1):
                    member, row = await _demo_member(
                        s,
                        rt,
                        before,
                        f"Demo {f}-{m}",
                        demo_family_phone(f, m),
                        f"Kares-demo-{f}-{m}",
                    )
                    accounts.append(member.account)
                    members.append(row)
                made.extend(members)
                fam_id, _ = await _demo_family(
                    s, rt, accounts, name=f"Demo family {f}", dependant=False
                )
                out.append({"id": fam_id, "name": f"Demo family {f}", "members": members})
    return out


DEMO_TRACKER = "Demo OwnTracks"


async def _demo_tracker(
    s: Any, rt: Any, account_id: str, last: dict[str, str] | None
) -> tuple[dict[str, str], bool]:
    """The member's demo OwnTracks credential: the one the last run printed while
    it still works, else a new one (and any other demo credential, whose secret
    nobody can print again, is revoked). True when it is new."""
    from kares.identity.service import TRACKER_KIND, authenticate
    from kares.location import trackers
    from kares.location.models import Tracker

    if last:
        found = await authenticate(s, rt, str(last.get("secret", "")))
        t = await s.get(Tracker, str(last.get("id", ""))[:32])
        if (
            found is not None
            and found[0].id == account_id
            and found[1].kind == TRACKER_KIND
            and t is not None
            and t.session_id == found[1].id
            and t.username == last.get("username")
        ):
            return {k: str(last[k]) for k in ("id", "kind", "username", "secret")}, False
    for v in await trackers.list_for(s, account_id=account_id):
        if v.tracker.name == DEMO_TRACKER and not v.revoked:
            await trackers.revoke(s, account_id=account_id, tracker_id=v.tracker.id)
    t, secret = await trackers.create(
        s, account_id=account_id, name=DEMO_TRACKER, kind="owntracks", ip="127.0.0.1"
    )
    return {"id": t.id, "kind": t.kind, "username": t.username, "secret": secret}, True


DEMO_FAMILY = "Li family"
DEMO_DEPENDANT = "Doudou"


async def _demo_family(
    s: Any, rt: Any, accounts: list[Any], *, name: str = DEMO_FAMILY, dependant: bool = True
) -> tuple[str, bool]:
    """A demo family, once: the first member owns it, the second is a guardian,
    the others are members, and (``dependant``) a child's managed profile is a
    dependant. Its id, and whether this run created it."""
    from kares.families import service as families

    owner, *others = accounts
    mine = [m for m in await families.families_of(s, owner.id) if m.family.name == name]
    if mine:
        return str(mine[0].family.id), False
    fam = await families.create_family(s, owner=owner, name=name)
    inv = await families.create_invitation(
        s, family_id=fam.id, actor_id=owner.id, expires_in_days=1, max_uses=len(others)
    )
    for account in others:
        await families.accept(s, account_id=account.id, text=families.invitation_text(inv))
    await families.set_role(
        s, family_id=fam.id, actor_id=owner.id, account_id=others[0].id, role="guardian"
    )
    if dependant:
        await families.add_dependant(
            s,
            rt,
            family_id=fam.id,
            actor=owner,
            session_id=None,
            device_id=None,
            name=DEMO_DEPENDANT,
            age_bracket="under_14",
        )
    return str(fam.id), True


def _demo_url(args: argparse.Namespace) -> str:
    """Where the hints point: --url, else the host and port `kares serve` would use."""
    if args.url:
        return str(args.url).rstrip("/")
    from kares.config import get_settings

    settings = get_settings()
    # a server on every interface is reached on this machine at the loopback address
    anywhere = {"0.0.0.0", "::", ""}  # noqa: S104 (compared with, not bound to)
    host = "127.0.0.1" if settings.host in anywhere else settings.host
    return f"http://{host}:{settings.port}"


def _cmd_demo(args: argparse.Namespace) -> int:
    if args.families:
        if not 1 <= args.families <= DEMO_FAMILIES_MAX:
            print(f"kares: --families takes 1 to {DEMO_FAMILIES_MAX}", file=sys.stderr)
            return 2
        fams = asyncio.run(_demo_families(args.families))
        if args.json:
            print(json.dumps({"families": fams}, indent=2))
            return 0
        for fam in fams:
            print(f"{fam['name']} ({fam['id']})")
            for m in fam["members"]:
                print(f"  {m['name']}  {m['phone']}  password {m['password']}  {m['matrix_user']}")
        return 0
    members, family_created = asyncio.run(_demo())
    url = _demo_url(args)
    for m in members:  # what to type into the phone's calendar (CalDAV account)
        m["caldav"] = {"url": f"{url}/dav/", **m["caldav"]}
    if args.json:
        print(json.dumps({"members": members, "family_created": family_created}, indent=2))
        return 0
    made = "created now" if family_created else "kept"
    print(
        f"Demo family '{DEMO_FAMILY}' ({made}; with {DEMO_DEPENDANT}, a child's managed "
        "profile) and its members. Running the demo again keeps every credential below "
        "that still works and makes only what is missing:\n"
    )
    for m in members:
        print(f"  {m['name']}")
        print(f"    phone     {m['phone']}")
        print(f"    password  {m['password']}")
        print(f"    matrix    {m['matrix_user']}")
        print(f"    token     {m['token']}")
        t = m["tracker"]
        print(f"    owntracks user {t['username']}  password {t['secret']}")
        cd = m["caldav"]
        print(f"    caldav    {cd['url']}  user {cd['username']}  password {cd['password']}")
        print(f"    created now: {', '.join(m['created'])}" if m["created"] else "    all kept")
    print(
        f"\nTry:  curl -H 'Authorization: Bearer <token>' {url}/api/v1/me\n"
        'Or sign in:  POST /api/v1/auth/password {"phone": ..., "password": ...}\n'
        f"OwnTracks (HTTP mode): URL {url}/owntracks with the user and password "
        "above;\n"
        "  or: curl -u <user>:<password> -H 'Content-Type: application/json' -d "
        '\'{"_type":"location","lat":31.23,"lon":121.47,"tst":\'$(date +%s)\'}\' '
        f"{url}/owntracks"
    )
    return 0


def _catalog_path(args: argparse.Namespace) -> Path | None:
    if args.catalog is not None:
        return Path(args.catalog)
    from kares.config import get_settings

    return get_settings().privacy_catalog


def _cmd_policy_check(args: argparse.Namespace) -> int:
    from kares import domains  # noqa: F401 - the data map walks every domain's tables
    from kares.privacy import catalog as catalog_mod
    from kares.privacy import render
    from kares.privacy.datamap import DataMapError, data_map

    path = _catalog_path(args)
    try:
        cat = catalog_mod.load(path)
        rows = data_map(cat)
    except (catalog_mod.CatalogError, DataMapError) as exc:
        print(f"kares: catalog error: {exc}", file=sys.stderr)
        return 2
    for lang in render.LANGS:  # the readable policy renders in every language
        doc = render.document(cat, lang, rows)
        render.html(doc)
        render.text(doc)
    p = cat.policy
    functions = list(cat.functions.values())
    print(f"catalog OK: {path or catalog_mod.DEFAULT_PATH}")
    print(
        f"  policy {p.version} of {p.date}, effective {p.effective}"
        + (", significant" if p.significant else "")
    )
    print(
        f"  {len(cat.legal_bases)} legal bases, {len(cat.categories)} categories "
        f"({sum(c.sensitive for c in cat.categories.values())} sensitive), "
        f"{len(cat.permissions)} device permissions"
    )
    print(
        f"  {len(functions)} functions ({sum(f.kind == 'basic' for f in functions)} basic, "
        f"{sum(f.kind == 'extended' for f in functions)} extended), "
        f"{len(cat.cookies)} cookies, {len(cat.sdks)} SDKs, "
        f"{len(cat.third_parties)} third parties"
    )
    print(f"  data map: {len(rows)} personal columns in {len({r.table for r in rows})} tables")
    print(f"  digest {cat.digest()}")
    try:
        published = asyncio.run(_check_against_published(cat))
    except catalog_mod.CatalogError as exc:
        print(f"kares: catalog error: {exc}", file=sys.stderr)
        return 2
    print(f"  {published}")
    return 0


async def _check_against_published(cat: Any) -> str:
    """Compare with the versions the database has served (nothing is written)."""
    from sqlalchemy.exc import SQLAlchemyError

    from kares.config import get_settings
    from kares.db import Database
    from kares.privacy import service as privacy

    db = Database(get_settings().effective_database_url)
    try:
        async with db.sessions() as s:
            try:
                versions = await privacy.list_versions(s)
            except (SQLAlchemyError, OSError):
                return "published versions: unknown (database not reachable or not migrated)"
            row = await privacy.sync_policy(s, cat, dry_run=True)
            if any(v.version == cat.policy.version for v in versions):
                return f"published versions: {len(versions)}; this version is already served"
            asks = ", ".join(row.reductions) or "nothing"
            return (
                f"published versions: {len(versions)}; this version is new and asks users "
                f"again about: {asks}"
            )
    finally:
        await db.dispose()


def _cmd_policy_render(args: argparse.Namespace) -> int:
    from kares import domains  # noqa: F401 - the data map walks every domain's tables
    from kares.privacy import catalog as catalog_mod
    from kares.privacy import render

    try:
        cat = catalog_mod.load(_catalog_path(args))
    except catalog_mod.CatalogError as exc:
        print(f"kares: catalog error: {exc}", file=sys.stderr)
        return 2
    doc = render.document(cat, args.lang)
    if args.format == "json":
        out = json.dumps(render.to_json(doc), ensure_ascii=False, indent=2) + "\n"
    elif args.format == "html":
        out = render.html(doc)
    else:
        out = render.text(doc)
    sys.stdout.flush()
    sys.stdout.buffer.write(out.encode("utf-8"))
    sys.stdout.buffer.flush()
    return 0


def _all_domains() -> None:
    from kares import domains

    assert domains.metadata.tables  # every domain's tables and hooks are registered


def _cmd_rights_export(args: argparse.Namespace) -> int:
    from kares.config import get_settings
    from kares.logs import setup_logging

    setup_logging(get_settings().log_level)
    return asyncio.run(_rights_export(args.phone, Path(args.out)))


async def _rights_export(phone: str, out: Path) -> int:
    from kares import domains, migrations
    from kares.config import get_settings
    from kares.errors import Problem
    from kares.rights import export
    from kares.runtime import Runtime

    assert domains.metadata.tables  # the archive walks every domain's tables
    rt = Runtime.build(get_settings())
    try:
        if await migrations.current_revision(rt.db.engine) != migrations.head_revision():
            print("kares: the database is not migrated: run `kares migrate` first", file=sys.stderr)
            return 2
        try:
            written = await export.operator_export(rt, phone, out)
        except Problem as p:  # a number that is not one
            print(f"kares: {p.detail}", file=sys.stderr)
            return 2
        if written is None:
            print("kares: no account has this phone number", file=sys.stderr)
            return 1
        print(f"wrote {out}: {len(written.files)} files, account {written.account_id}")
        return 0
    finally:
        await rt.close()


async def _rights_delete(phone: str) -> int:
    from kares import domains, migrations
    from kares.config import get_settings
    from kares.errors import Problem
    from kares.identity.service import find_by_phone, parse_phone
    from kares.rights import erase
    from kares.runtime import Runtime

    assert domains.metadata.tables  # every domain's erasure hooks are registered
    settings = get_settings()
    rt = Runtime.build(settings)
    try:
        if await migrations.current_revision(rt.db.engine) != migrations.head_revision():
            print("kares: the database is not at the newest migration: run `kares migrate`")
            return 2
        try:
            e164 = parse_phone(phone, settings.default_region)
        except Problem as exc:
            print(f"kares: {exc.detail}", file=sys.stderr)
            return 2
        async with rt.db.sessions() as s:
            account = await find_by_phone(s, e164)
        if account is None:
            print("kares: no account has that phone number", file=sys.stderr)
            return 1
        try:
            out = await erase.delete_now(rt, account)
        except Problem as exc:  # a legal hold keeps the account for now
            print(f"kares: not deleted: {exc.detail}", file=sys.stderr)
            return 1
        print("deleted (rows per table):")
        for table, n in sorted(out.deleted.items()):
            print(f"  {table}: {n}")
        if out.cleared:
            print("kept, reference to the account removed (rows per table):")
            for table, n in sorted(out.cleared.items()):
                print(f"  {table}: {n}")
        if out.third_parties:
            print("third parties asked to delete: " + ", ".join(out.third_parties))
        print(f"deletion register entry {out.entry['id'] if out.entry else '-'}")
        return 0
    finally:
        await rt.close()


def _cmd_rights_delete(args: argparse.Namespace) -> int:
    if not args.now:
        print(
            "kares: an operator's deletion happens at once: say --now (a person's own "
            "request waits out the cooling-off period)",
            file=sys.stderr,
        )
        return 2
    return asyncio.run(_rights_delete(args.phone))


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError("a port is between 0 and 65535")
    return port


def _workers(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 1 <= n <= 64:
        raise argparse.ArgumentTypeError("between 1 and 64 processes")
    return n


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="kares",
        description="Kares family-care service. Configure with KARES_* environment variables; "
        "with none set it runs embedded (SQLite under ./var).",
    )
    p.add_argument("--version", action="version", version=f"kares {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the API and web server")
    serve.add_argument("--host", default=None, help="bind address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=None, help="port (default 8000)")
    serve.add_argument(
        "--no-migrate",
        action="store_true",
        help="do not apply pending migrations on the embedded database at start",
    )
    serve.add_argument(
        "--watch-port",
        type=_port,
        default=None,
        help="also listen for kids' watches (the [3G*id*len*...] TCP protocol) on this port "
        "(KARES_WATCH_PORT; bound to KARES_WATCH_HOST, default 127.0.0.1)",
    )
    serve.add_argument(
        "--workers",
        type=_workers,
        default=1,
        help="processes answering on the port (default 1; more need KARES_REDIS_URL)",
    )
    serve.set_defaults(func=_cmd_serve)

    worker = sub.add_parser(
        "worker",
        help="run background jobs (push delivery, ...) outside the API process; "
        "set KARES_JOBS_WORKER=false on `kares serve` to leave them all to workers",
    )
    worker.add_argument("--once", action="store_true", help="run the jobs due now, then exit")
    worker.set_defaults(func=_cmd_worker)

    mig = sub.add_parser("migrate", help="apply pending database migrations")
    mig.set_defaults(func=_cmd_migrate)

    demo = sub.add_parser("demo", help="seed demo accounts and print how to sign in as each member")
    demo.add_argument("--json", action="store_true", help="print JSON for scripts")
    demo.add_argument(
        "--url", default=None, help="the server's address in the hints (default: KARES_HOST:PORT)"
    )
    demo.add_argument(
        "--families",
        type=int,
        default=0,
        metavar="N",
        help="seed N demo families of four instead (benchmarks, load tests): each member "
        "with a password, a token and a Matrix user id",
    )
    demo.set_defaults(func=_cmd_demo)

    policy = sub.add_parser("policy", help="the privacy policy: check the catalog, render the text")
    policy_sub = policy.add_subparsers(dest="policy_command", required=True)
    catalog_help = "the catalog file (default: KARES_PRIVACY_CATALOG, else the built-in one)"
    check = policy_sub.add_parser(
        "check", help="validate the privacy catalog; exit 2 naming the bad entry"
    )
    check.add_argument("--catalog", metavar="PATH", default=None, help=catalog_help)
    check.set_defaults(func=_cmd_policy_check)
    rend = policy_sub.add_parser("render", help="print the readable privacy policy")
    rend.add_argument("--lang", choices=["en", "zh"], default="en", help="language (default en)")
    rend.add_argument(
        "--format", choices=["text", "html", "json"], default="text", help="default text"
    )
    rend.add_argument("--catalog", metavar="PATH", default=None, help=catalog_help)
    rend.set_defaults(func=_cmd_policy_render)

    ret = sub.add_parser("retention", help="retention of personal data (policy 4.1)")
    ret_sub = ret.add_subparsers(dest="retention_command", required=True)
    ret_sub.add_parser(
        "report", help="dry run: per category and table, what would go now and when next"
    ).set_defaults(func=_cmd_retention)
    ret_sub.add_parser("run", help="remove what is expired now").set_defaults(func=_cmd_retention)
    hold = ret_sub.add_parser("hold", help="suspend retention for an account (legal hold)")
    hold.add_argument("--phone", required=True, help="the account's phone number")
    hold.add_argument("--reason", required=True, help="the legal matter, for the record")
    hold.set_defaults(func=_cmd_retention)
    rel = ret_sub.add_parser("release", help="end an account's legal hold")
    rel.add_argument("--phone", required=True, help="the account's phone number")
    rel.set_defaults(func=_cmd_retention)
    from kares.stats import command as stats_command

    stats_command.register(sub, prepare=_all_domains)
    rights = sub.add_parser("rights", help="users' rights run by an operator (logged)")
    rights_sub = rights.add_subparsers(dest="rights_command", required=True)
    rexp = rights_sub.add_parser(
        "export", help="write the data archive of the account with a phone number"
    )
    rexp.add_argument("--phone", required=True, help="the account's phone number")
    rexp.add_argument("--out", required=True, metavar="FILE", help="the zip file to write")
    rexp.set_defaults(func=_cmd_rights_export)
    rdel = rights_sub.add_parser(
        "delete",
        help="delete an account and all its data at once, after verifying the person; "
        "prints what went per table",
    )
    rdel.add_argument("--phone", required=True, help="the account's phone number")
    rdel.add_argument("--now", action="store_true", help="no cooling-off period (required)")
    rdel.set_defaults(func=_cmd_rights_delete)
    from kares.rights import staff_cli

    staff_cli.add_commands(sub, prepare=_all_domains)  # kares staff list | show | answer
    from kares.rights import backup_cli

    backup_cli.add_commands(sub, prepare=_all_domains)  # kares backup key | create | restore
    from kares.protocols import applehealth_cli

    applehealth_cli.add_commands(sub, prepare=_all_domains)  # kares health import
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        from kares.config import ConfigError

        if isinstance(exc, ConfigError):
            print(f"kares: configuration error: {exc}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    raise SystemExit(main())
