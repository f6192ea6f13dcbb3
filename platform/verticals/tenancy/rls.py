"""Row-level security on PostgreSQL: the policies every tenant-owned table carries, the migration
operation that puts them there, and the application's database roles.

`tenant_isolation` (every role): a tenant-owned table (it has `tenant_id`) lets a row through when
it is the session's tenant's (`app.tenant_id`) or when the session works platform-wide
(`app.platform = 'on'`); a table whose rows belong to a tenant through a parent row (a contract's
prices, an invoice's lines) lets a row through when its parent is visible.

`partner_console` (only for the role PARTNER_ROLE, which a partner's console takes on): a row of
one of the console's tenants (`app.tenant_ids`), and a partner's own invoice (`app.partner_ids`).
A partner-owned table (no `tenant_id`: a partner's audit trail) passes a row to a platform scope,
and to the console of its partner (`app.partner_ids`), to nobody else.
Being the policy of one role, it costs the application's everyday statements nothing (PostgreSQL
adds the policies of the current role only; an arm of the tenant policy made every statement
plan and filter about 8% slower here).

The policies are FORCEd, so they hold for the table's owner too; only a superuser or a BYPASSRLS
role passes them, and the application's roles are neither. SQLite (the embedded default) has no
such thing: the application's scoping is its only wall there.
"""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured
from django.db.migrations.operations.base import Operation

# The role a partner's console works as (NOLOGIN: the application's role takes it on with the scope).
from verticals.tenancy.context import PARTNER_ROLE

POLICY, PARTNER_POLICY = "tenant_isolation", "partner_console"
VISIBLE = (
    "(current_setting('app.platform', true) = 'on' "
    "OR {column} = NULLIF(current_setting('app.tenant_id', true), '')::bigint)"
)
PLATFORM_ONLY = "(current_setting('app.platform', true) = 'on')"
PARTNER_VISIBLE = "({column} = ANY (string_to_array(current_setting('app.tenant_ids', true), ',')::bigint[]){partner})"
OWN_INVOICE = (
    " OR {column} = ANY (string_to_array(current_setting('app.partner_ids', true), ',')::bigint[])"
)
CREATE_PARTNER_ROLE = (
    f"DO $$ BEGIN CREATE ROLE {PARTNER_ROLE} NOLOGIN NOSUPERUSER NOBYPASSRLS; "
    "EXCEPTION WHEN duplicate_object THEN NULL; END $$"
)


def policy_sql(
    table: str, condition: str, quote, partner_condition: str | None = None
) -> list[str]:
    statements = [
        f"ALTER TABLE {quote(table)} ENABLE ROW LEVEL SECURITY",
        f"ALTER TABLE {quote(table)} FORCE ROW LEVEL SECURITY",
        f"DROP POLICY IF EXISTS {POLICY} ON {quote(table)}",
        f"CREATE POLICY {POLICY} ON {quote(table)} USING {condition} WITH CHECK {condition}",
        f"DROP POLICY IF EXISTS {PARTNER_POLICY} ON {quote(table)}",
    ]
    if partner_condition:
        statements += [
            CREATE_PARTNER_ROLE,
            f"CREATE POLICY {PARTNER_POLICY} ON {quote(table)} TO {PARTNER_ROLE} "
            f"USING {partner_condition} WITH CHECK {partner_condition}",
        ]
    return statements


class EnableRowLevelSecurity(Operation):
    """Give a tenant-owned table its policies (PostgreSQL only; nothing on other databases).

    `through`: for a table without `tenant_id` (or whose `tenant_id` is not its owner), the foreign
    key to the tenant-owned parent whose visibility its rows share. `partner`: a foreign key to a
    partner whose console may see the row too (a wholesale invoice); on a table without
    `tenant_id`, the row's owner: only a platform scope and that partner's console pass it (a
    partner's audit trail)."""

    reversible = True
    reduces_to_sql = True

    def __init__(self, model_name: str, through: str | None = None, partner: str | None = None):
        self.model_name = model_name
        self.through = through
        self.partner = partner

    def deconstruct(self):
        kwargs = {
            key: value
            for key, value in (("through", self.through), ("partner", self.partner))
            if value
        }
        return self.__class__.__qualname__, [self.model_name], kwargs

    def state_forwards(self, app_label, state):
        pass  # the schema Django knows of does not change

    def _conditions(self, model, quote) -> tuple[str, str | None]:
        """(the tenant policy's condition, the partner console's, or None when the parent's serves)."""
        names = {f.name for f in model._meta.concrete_fields}
        if self.through is None and "tenant" not in names and self.partner:
            # A partner-owned row (a partner's audit trail): no tenant session passes it; a
            # platform scope does, and the console of its own partner.
            own = quote(model._meta.get_field(self.partner).column)
            return PLATFORM_ONLY, (
                f"({own} = ANY (string_to_array(current_setting('app.partner_ids', true), ',')"
                "::bigint[]))"
            )
        if self.through is None:
            column = quote(model._meta.get_field("tenant").column)
            own = (
                OWN_INVOICE.format(column=quote(model._meta.get_field(self.partner).column))
                if self.partner
                else ""
            )
            return VISIBLE.format(column=column), PARTNER_VISIBLE.format(column=column, partner=own)
        field = model._meta.get_field(self.through)
        parent = field.related_model._meta
        return (
            f"(EXISTS (SELECT 1 FROM {quote(parent.db_table)} AS parent "
            f"WHERE parent.{quote(parent.pk.column)} = {quote(model._meta.db_table)}.{quote(field.column)}))"
        ), None

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor != "postgresql":
            return
        model = to_state.apps.get_model(app_label, self.model_name)
        quote = schema_editor.quote_name
        condition, partner_condition = self._conditions(model, quote)
        for statement in policy_sql(model._meta.db_table, condition, quote, partner_condition):
            schema_editor.execute(statement)

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor != "postgresql":
            return
        table = schema_editor.quote_name(
            from_state.apps.get_model(app_label, self.model_name)._meta.db_table
        )
        schema_editor.execute(f"DROP POLICY IF EXISTS {PARTNER_POLICY} ON {table}")
        schema_editor.execute(f"DROP POLICY IF EXISTS {POLICY} ON {table}")
        schema_editor.execute(f"ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY")
        schema_editor.execute(f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY")

    def describe(self):
        return f"Row-level security on {self.model_name}"

    @property
    def migration_name_fragment(self):
        return f"rls_{self.model_name.lower()}"


def provision_app_role(connection) -> None:
    """Make sure the application's role (and the partner console's, which it may take on) exist,
    cannot pass the policies, and may read and write every table (run as the owner after
    migrating: new tables need their grants)."""
    user = getattr(connection, "app_user", "")
    if connection.vendor != "postgresql" or not user:
        return
    quote = connection.ops.quote_name
    with connection.cursor() as cursor:
        cursor.execute(
            "DO $$ BEGIN CREATE ROLE "
            + quote(user)
            + " LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS; "
            "EXCEPTION WHEN duplicate_object THEN NULL; END $$"
        )
        cursor.execute(CREATE_PARTNER_ROLE)
        for role in (user, PARTNER_ROLE):
            cursor.execute("SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = %s", [role])
            superuser, bypass = cursor.fetchone()
            if superuser or bypass:
                raise ImproperlyConfigured(
                    f"The database role {role!r} is a superuser or has BYPASSRLS, so row-level security would not "
                    f"hold for it. Run `ALTER ROLE {role} NOSUPERUSER NOBYPASSRLS`, or set DATABASE_APP_USER to another role."
                )
        if connection.app_password:
            cursor.execute(
                connection.ops.compose_sql(
                    f"ALTER ROLE {quote(user)} PASSWORD %s", [connection.app_password]
                )
            )
        # a partner's console takes it on (SET ROLE)
        cursor.execute(f"GRANT {PARTNER_ROLE} TO {quote(user)}")
        cursor.execute("SELECT current_database(), current_schema()")
        database, schema = cursor.fetchone()
        cursor.execute(f"GRANT CONNECT, TEMPORARY ON DATABASE {quote(database)} TO {quote(user)}")
        for role in (quote(user), PARTNER_ROLE):
            cursor.execute(f"GRANT USAGE ON SCHEMA {quote(schema)} TO {role}")
            cursor.execute(
                f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {quote(schema)} TO {role}"
            )
            cursor.execute(
                f"GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA {quote(schema)} TO {role}"
            )


def as_owner(connection, reason: str):
    """A context in which `connection` logs in as the owner (a no-op where it always does)."""
    from contextlib import nullcontext

    switch = getattr(connection, "as_owner", None)
    return switch(reason) if switch is not None else nullcontext()
