"""The ledger spool: served calls' usage events, written to the ledger in batches.

A served call (a prediction, a generation) must not wait for a database write of its own: that
write costs more than everything else metering does. So each web process journals the call's
events in a spool (`verticals.infra.spool`: memory-mapped journal segments, a writer thread, the
segments of killed processes recovered) and its writer puts them in the ledger every
BILLING_LEDGER_FLUSH_SECONDS in one INSERT … ON CONFLICT DO NOTHING (`metering.write_lines`).
Each event carries its idempotency key, so an event written twice counts once.

The folder is one per database (`directory()`), on a local file system.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from pathlib import Path

from django.conf import settings
from django.db import close_old_connections, connection

from verticals.infra.spool import ProcessSpool, Spool, SpoolClosed, recover_orphans

__all__ = [
    "SpoolClosed",
    "current",
    "directory",
    "enabled",
    "flush",
    "recover",
    "refused",
    "stop",
]

log = logging.getLogger(__name__)


def enabled() -> bool:
    return settings.BILLING_LEDGER_FLUSH_SECONDS > 0


def directory() -> Path:
    """The spools' folder for this database (VAR_DIR/billing/spool/<database>): processes that
    share a VAR_DIR but not a database — tests, a dev server — never write each other's events."""
    found = connection.settings_dict
    identity = "|".join(str(found.get(key) or "") for key in ("ENGINE", "NAME", "HOST", "PORT"))
    path = (
        Path(settings.VAR_DIR)
        / "billing"
        / "spool"
        / hashlib.sha256(identity.encode()).hexdigest()[:16]
    )
    path.mkdir(parents=True, exist_ok=True)
    return path


def _release_connection() -> None:
    try:
        connection.close()  # a broken connection is opened afresh at the next write
    except Exception:
        pass


# What puts journal lines in the ledger: metering.write_lines, which metering hands over when it
# is imported (it journals through this module, so this module does not import it).
_write: Callable[[list[str]], None] | None = None


def writes_with(write: Callable[[list[str]], None]) -> None:
    global _write
    _write = write


def _writer() -> Callable[[list[str]], None]:
    if _write is None:
        raise RuntimeError("the ledger spool has no writer: import verticals.billing.metering")
    return _write


def _start() -> Spool:
    return Spool(
        directory(),
        settings.BILLING_LEDGER_FLUSH_SECONDS,
        _writer(),
        # As after a request: CONN_MAX_AGE holds for the writer's connection too.
        on_tick=close_old_connections,
        on_release=_release_connection,
    )


process = ProcessSpool(_start)
current = process.current  # this process's spool, started at its first use
flush = process.flush  # write this process's queued events now (tests; readers of every call)
stop = process.stop  # write what this process holds and end its spool


def recover() -> int:
    """Write the events that ended processes left in this database's spool folder."""
    return recover_orphans(directory(), _writer())


def refused(lines: list[str], reason: str) -> None:
    """Events the ledger refuses for good (not a connection problem: a value it cannot store): kept
    in `refused.jsonl` beside the spool, for staff to look at, and logged."""
    log.error(
        "the ledger refused %d usage event(s): %s; they are kept in %s",
        len(lines),
        reason,
        directory() / "refused.jsonl",
    )
    with open(directory() / "refused.jsonl", "a", encoding="utf-8") as kept:
        kept.writelines(lines)
