"""The audit log's writes, gathered over one turn of the event loop and written in one
transaction.

Every agent stream is audited when it starts and when it ends (hub/trust/roles.py): a hub
restarting under 10,000 agents used to queue 10,000 one-row transactions on its one database
thread, ahead of the registrations the same agents waited for. Gathered, the entries of one
turn of the loop cost one transaction; order holds (the batch goes to the database thread at
the end of the turn in which its first entry came, in order with every other write).
"""

from __future__ import annotations

import asyncio

from hub.store import Database
from hub.store.trust import AuditEntry, TrustStore


class AuditLog:
    def __init__(self, db: Database, store: TrustStore) -> None:
        self.db = db
        self.store = store
        self._entries: list[AuditEntry] = []

    def record(self, entry: AuditEntry) -> None:
        """Queue an entry; it is written at the end of this turn of the loop."""
        self._entries.append(entry)
        if len(self._entries) > 1:
            return
        try:
            asyncio.get_running_loop().call_soon(self.flush)
        except RuntimeError:  # no loop (a caller outside the hub's loop): write now
            self.flush()

    def flush(self) -> None:
        """Hand what is gathered to the database thread now (the hub's stop calls it last)."""
        if self._entries:
            entries, self._entries = self._entries, []
            self.db.submit(self.store.audit_many, entries)
