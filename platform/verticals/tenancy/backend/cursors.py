"""Cursors for hot paths that bypass Django's query layer (the ledger's writes, rate counters)."""

from __future__ import annotations

from django.db import connection


def raw_cursor():
    """A cursor for the hot path's statements. On PostgreSQL, psycopg's own cursor on Django's
    connection (same transaction): parameters bound by the server, the statement prepared once
    it repeats — a fraction of the client-side work of Django's default (interpolating) cursor.
    It passes Django's cursor, so it tells the database the tenant scope itself (row-level security)."""
    if connection.vendor == "postgresql":
        import psycopg  # (only on PostgreSQL)

        connection.ensure_connection()
        if hasattr(connection, "apply_tenant_scope"):
            connection.apply_tenant_scope()
        # Django's connection makes client-side cursors by default
        return psycopg.Cursor(connection.connection)
    return connection.cursor()
