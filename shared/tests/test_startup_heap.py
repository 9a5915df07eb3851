"""A service process freezes its start-up heap once (gc.freeze), so full collections under load walk only what
was allocated since; a later start in the same process freezes nothing more (it would freeze garbage for good)."""
from __future__ import annotations

import subprocess
import sys
import textwrap

# In a process of its own: the pytest process has started services already (its heap is frozen once).
_SCRIPT = textwrap.dedent("""
    import asyncio, gc, sys, tempfile
    from pathlib import Path
    from salesflow_shared.app import ServiceContext, ServiceDefinition
    from salesflow_shared.settings import ServiceSettings
    from salesflow_shared.testing import service_test_settings

    def context(folder, name):
        settings = service_test_settings(ServiceSettings, database_url=f"sqlite+aiosqlite:///{folder}/{name}.db",
                                         service_name=name, migrate_on_start=False)
        return ServiceContext(ServiceDefinition(name=name, settings=settings, routers=[],
                                                migrations_path=Path("unused")), None)

    class Cycle:
        def __init__(self):
            self.me = self

    async def main():
        folder = tempfile.mkdtemp()
        assert gc.get_freeze_count() == 0
        first = context(folder, "first")
        await first.start()
        frozen = gc.get_freeze_count()
        print("frozen", frozen)
        garbage = [Cycle() for _ in range(1000)]
        del garbage  # cycles: only the collector frees them
        second = context(folder, "second")
        await second.start()
        print("after second start", gc.get_freeze_count())
        gc.collect()
        print("cycles alive", sum(isinstance(o, Cycle) for o in gc.get_objects()))
        await second.stop()
        await first.stop()

    asyncio.run(main())
""")


def test_the_first_start_freezes_the_heap_and_a_later_one_leaves_garbage_collectable():
    done = subprocess.run([sys.executable, "-c", _SCRIPT], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = dict(line.rsplit(" ", 1) for line in done.stdout.splitlines())
    frozen = int(lines["frozen"])
    # Everything the start-up left alive: the imported modules alone are tens of thousands of objects.
    assert frozen > 20_000
    # Nothing more frozen (the count only falls as frozen objects die) ...
    assert int(lines["after second start"]) <= frozen
    # ... so the cycles made between the two starts were still the collector's to free.
    assert int(lines["cycles alive"]) == 0
