"""Django's PostgreSQL backend, connecting as the application's role and telling the database,
before each statement, whose rows it may see.

- The application logs in as `OPTIONS["app_user"]`: a role that owns no table and lacks
  BYPASSRLS, so the row-level security policies of tenant-owned tables hold for it (they are
  FORCEd, so they would hold for the owner too). Schema work (migrate, flush, creating and
  dropping test databases) logs in as the settings' own USER, the owner (`as_owner()`).
- Before a statement runs, the session's `app.tenant_ids`, `app.partner_ids` and `app.platform`
  are made to match the scope of the work under way (`verticals.tenancy.context.database_scope`).
  They are set at session level with `set_config` and remembered, so a request costs one extra
  round trip when its scope changes, not one per statement. A rollback (of the transaction or of
  a savepoint) undoes a `set_config` made inside it, so after one the session's values are
  unknown and are set again before the next statement. (One server session per connection: a
  pooler in front must pool sessions, not transactions.)
"""

from __future__ import annotations

from contextlib import contextmanager

from django.db import DEFAULT_DB_ALIAS, NotSupportedError
from django.db.backends.base.base import NO_DB_ALIAS
from django.db.backends.postgresql import base as postgresql
from psycopg.pq import ExecStatus

from verticals.tenancy.context import database_scope, platform_scope

SET_SCOPE = (
    "SELECT set_config('app.tenant_id', %s, false), set_config('app.tenant_ids', %s, false), "
    "set_config('app.partner_ids', %s, false), set_config('app.platform', %s, false), set_config('role', %s, false)"
)
SET_SCOPE_LIBPQ = (
    b"SELECT set_config('app.tenant_id', $1, false), set_config('app.tenant_ids', $2, false), "
    b"set_config('app.partner_ids', $3, false), set_config('app.platform', $4, false), "
    b"set_config('role', $5, false)"
)
TUPLES_OK = ExecStatus.TUPLES_OK


class DatabaseOperations(postgresql.DatabaseOperations):
    compiler_module = "verticals.tenancy.backend.compiler"


class DatabaseWrapper(postgresql.DatabaseWrapper):
    ops_class = DatabaseOperations

    def __init__(self, settings_dict, alias=DEFAULT_DB_ALIAS):
        super().__init__(settings_dict, alias)
        options = self.settings_dict["OPTIONS"]
        self.app_user: str = options.get("app_user") or ""
        self.app_password: str = options.get("app_password") or ""
        self._as_owner = False
        self._scope_sent: tuple[str, ...] | None = None  # what the session holds; None: unknown
        self.execute_wrappers.append(self._scoped_execute)

    # --- who logs in ---------------------------------------------------------------------------

    @property
    def logs_in_as_app(self) -> bool:
        return bool(self.app_user) and not self._as_owner and self.alias != NO_DB_ALIAS

    def get_connection_params(self):
        params = super().get_connection_params()
        params.pop("app_user", None)
        params.pop("app_password", None)
        if self.logs_in_as_app:
            params["user"] = self.app_user
            params.pop("password", None)
            if self.app_password:
                params["password"] = self.app_password
        return params

    @contextmanager
    def as_owner(self, reason: str):
        """Log in as the owner for schema work (and see every tenant's rows: migrations move data)."""
        if self.in_atomic_block:
            raise NotSupportedError(
                "Switching to the owner's login inside a transaction would end it."
            )
        switch = self.logs_in_as_app
        if switch:
            self.close()
            self._as_owner = True
        try:
            with platform_scope(reason):
                yield
        finally:
            if switch:
                self.close()
                self._as_owner = False

    # --- the scope the session holds -------------------------------------------------------------

    def init_connection_state(self):
        super().init_connection_state()
        # Unknown until set: one from a pool may hold its last user's values, and a new session
        # whatever `ALTER ROLE … SET` gives it. Its first statement sets the scope (one round trip).
        self._scope_sent = None

    def apply_tenant_scope(self) -> None:
        """Make the session's scope that of the work under way (for statements sent around Django's
        cursors too, e.g. the ledger's psycopg cursor)."""
        wanted = database_scope()
        if wanted != self._scope_sent:
            # libpq's own call, in one round trip: a tenth of the CPU a psycopg cursor spends on it
            # (measured here: about 5 µs against 64 µs), which a request pays when its scope changes.
            with self.wrap_database_errors:
                result = self.connection.pgconn.exec_params(
                    SET_SCOPE_LIBPQ, [value.encode() for value in wanted]
                )
            if result.status != TUPLES_OK:
                # (a failed transaction, a broken connection): the database's error, as Django raises it
                with self.wrap_database_errors, self.connection.cursor() as cursor:
                    cursor.execute(SET_SCOPE, wanted)
            self._scope_sent = wanted

    def _scoped_execute(self, execute, sql, params, many, context):
        self.apply_tenant_scope()
        return execute(sql, params, many, context)

    def _rollback(self):
        self._scope_sent = None
        return super()._rollback()

    # Savepoint statements go straight to psycopg: they must not be preceded by a set_config (inside
    # a failed transaction it would fail too, and hide the rollback that recovers from it).
    def _savepoint(self, sid):
        with self.wrap_database_errors, self.connection.cursor() as cursor:
            cursor.execute(self.ops.savepoint_create_sql(sid))

    def _savepoint_rollback(self, sid):
        self._scope_sent = None
        with self.wrap_database_errors, self.connection.cursor() as cursor:
            cursor.execute(self.ops.savepoint_rollback_sql(sid))

    def _savepoint_commit(self, sid):
        with self.wrap_database_errors, self.connection.cursor() as cursor:
            cursor.execute(self.ops.savepoint_commit_sql(sid))
