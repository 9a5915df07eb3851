"""The `salesflow` command: run the system, mint a dev token, export event schemas, migrate, dead letters."""
from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

from .auth import ROLES, mint_token
from .settings import ServiceSettings


def _cmd_run(args: argparse.Namespace) -> int:
    from .runner import run

    return run(args.host)


def _cmd_token(args: argparse.Namespace) -> int:
    settings = ServiceSettings()
    print(mint_token(settings.jwt_secret, sub=args.sub, org=args.org, role=args.role, ttl_s=args.ttl,
                     audience=settings.jwt_audience or None))
    return 0


def _cmd_schemas(args: argparse.Namespace) -> int:
    from .events.schemas_export import export

    stale = export(Path(args.target), check=args.check)
    if args.check and stale:
        print("event schemas are stale; run `salesflow schemas export`:", *stale, sep="\n  ", file=sys.stderr)
        return 1
    print("event schemas are current" if args.check else f"wrote {len(stale)} changed file(s) to {args.target}")
    return 0


def _cmd_migrate(args: argparse.Namespace) -> int:
    from .db import Database, ensure_postgres_database
    from .migrations import run_migrations
    from .runner import find_service

    entry = find_service(args.service)
    definition = entry.load_module("bootstrap").build_definition()

    async def _migrate() -> None:
        url = definition.settings.resolved_database_url
        if url.startswith("postgresql"):
            await ensure_postgres_database(url)
        database = Database(url)
        try:
            await run_migrations(database, definition.migrations_path, definition.name)
        finally:
            await database.dispose()

    asyncio.run(_migrate())
    print(f"{entry.name}: migrated")
    return 0


def _cmd_openapi(args: argparse.Namespace) -> int:
    from .openapi_merge import export

    stale = export(Path(args.target), check=args.check)
    if args.check and stale:
        print(f"{args.target} is stale; run `salesflow openapi`", file=sys.stderr)
        return 1
    print(f"{args.target} is current" if not stale else f"wrote {args.target}")
    return 0


def _cmd_dlq(args: argparse.Namespace) -> int:
    from .bus import RabbitBus
    from .runner import find_service

    settings = ServiceSettings()
    if not settings.amqp_url:
        print("SALESFLOW_AMQP_URL is not set; in the embedded mode use GET /admin/dead-letters", file=sys.stderr)
        return 2
    entry = find_service(args.service)
    queue = f"{entry.name}.events"

    async def _go() -> int:
        bus = RabbitBus(settings.amqp_url, exchange=settings.event_exchange, namespace=settings.bus_namespace,
                        client_name="salesflow-cli")
        await bus.start()
        try:
            if args.action == "list":
                for parked in await bus.list_parked(queue, limit=args.limit):
                    print(json.dumps({"event_id": parked.event_id, "event_type": parked.event_type,
                                      "attempts": parked.attempts, "last_error": parked.last_error,
                                      "parked_at": parked.parked_at}))
            else:
                print(f"replayed {await bus.replay_parked(queue, args.event_id)}")
        finally:
            await bus.close()
        return 0

    return asyncio.run(_go())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="salesflow", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="run all six services (embedded unless PostgreSQL/RabbitMQ are configured)")
    p.add_argument("--host", default="127.0.0.1")
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("token", help="mint a JWT for local use (signed with SALESFLOW_JWT_SECRET)")
    p.add_argument("--org", required=True)
    p.add_argument("--role", choices=ROLES, default="admin")
    p.add_argument("--sub", default="dev-user")
    p.add_argument("--ttl", type=int, default=24 * 3600, help="seconds")
    p.set_defaults(func=_cmd_token)

    p = sub.add_parser("schemas", help="export the event JSON Schemas into docs/events")
    p.add_argument("action", choices=["export"])
    p.add_argument("--target", default="docs/events")
    p.add_argument("--check", action="store_true", help="fail if the exported files are stale")
    p.set_defaults(func=_cmd_schemas)

    p = sub.add_parser("migrate", help="apply a service's migrations to its database (pre-start step)")
    p.add_argument("service")
    p.set_defaults(func=_cmd_migrate)

    p = sub.add_parser("openapi", help="merge the six services' OpenAPI documents into one (the gateway's)")
    p.add_argument("--target", default="docs/openapi.json")
    p.add_argument("--check", action="store_true", help="fail if the file is stale")
    p.set_defaults(func=_cmd_openapi)

    p = sub.add_parser("dlq", help="list or replay a service's parked messages (RabbitMQ)")
    p.add_argument("action", choices=["list", "replay"])
    p.add_argument("service")
    p.add_argument("--event-id")
    p.add_argument("--limit", type=int, default=100)
    p.set_defaults(func=_cmd_dlq)

    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
