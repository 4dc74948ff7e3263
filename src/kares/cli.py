"""The ``kares`` command: serve, migrate, demo."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from kares import __version__


def _cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from kares.app import create_app
    from kares.config import get_settings
    from kares.logs import setup_logging

    settings = get_settings()
    setup_logging(settings.log_level)
    app = create_app(settings, migrate_embedded=not args.no_migrate)
    uvicorn.run(
        app,
        host=args.host or settings.host,
        port=args.port or settings.port,
        log_config=None,
        proxy_headers=False,
        server_header=False,
    )
    return 0


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


async def _demo() -> list[dict[str, Any]]:
    from kares import migrations
    from kares.accounts import service
    from kares.config import get_settings
    from kares.runtime import Runtime

    settings = get_settings()
    await asyncio.to_thread(migrations.upgrade, settings.effective_database_url)
    rt = Runtime.build(settings)
    out = []
    try:
        async with rt.db.sessions() as s:
            for name, phone, password in DEMO_MEMBERS:
                _account, token = await service.demo_member(
                    s, rt, phone=phone, name=name, password=password
                )
                out.append({"name": name, "phone": phone, "password": password, "token": token})
    finally:
        await rt.close()
    return out


def _cmd_demo(args: argparse.Namespace) -> int:
    members = asyncio.run(_demo())
    if args.json:
        print(json.dumps({"members": members}, indent=2))
        return 0
    print("Demo accounts (run again to get fresh tokens; nothing is duplicated):\n")
    for m in members:
        print(f"  {m['name']}")
        print(f"    phone     {m['phone']}")
        print(f"    password  {m['password']}")
        print(f"    token     {m['token']}")
    print(
        "\nTry:  curl -H 'Authorization: Bearer <token>' http://127.0.0.1:8000/api/v1/me\n"
        'Or sign in:  POST /api/v1/auth/password {"phone": ..., "password": ...}'
    )
    return 0


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
    serve.set_defaults(func=_cmd_serve)

    mig = sub.add_parser("migrate", help="apply pending database migrations")
    mig.set_defaults(func=_cmd_migrate)

    demo = sub.add_parser("demo", help="seed demo accounts and print how to sign in as each member")
    demo.add_argument("--json", action="store_true", help="print JSON for scripts")
    demo.set_defaults(func=_cmd_demo)
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
