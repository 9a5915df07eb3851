"""`python -m metrics_service.entrypoints.cli rebuild [--org ORG]`: rebuild the read models from the event log.

Uses SALESFLOW_DATABASE_URL (or the embedded SQLite file) like the service itself; migrate first.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import sys

from salesflow_shared.db import Database

from ..config import Settings
from ..service_layer.projector import rebuild_read_models


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="metrics-service", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("rebuild", help="delete the read models and replay the event log into them")
    p.add_argument("--org", default=None, help="only this org (default: all)")
    args = parser.parse_args(argv)

    async def _go() -> dict[str, int]:
        database = Database(Settings().resolved_database_url)
        try:
            return await rebuild_read_models(database, args.org)
        finally:
            await database.dispose()

    print(json.dumps(asyncio.run(_go())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
