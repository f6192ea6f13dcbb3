"""Django's SQL compilers, with one addition: a query built by a `dangerously_unscoped` manager
runs inside a platform scope, so the database lets every tenant's rows through for it too."""

from django.db.backends.postgresql import compiler as django

from verticals.tenancy.context import platform_scope
from verticals.tenancy.scoping import UnscopedQuerySet


class _PlatformAware:
    def execute_sql(self, *args, **kwargs):
        if getattr(self.query, "platform_scope", False):
            with platform_scope(UnscopedQuerySet.REASON):
                return super().execute_sql(*args, **kwargs)
        return super().execute_sql(*args, **kwargs)


class SQLCompiler(_PlatformAware, django.SQLCompiler):
    pass


# Inserts and deletes are built afresh by Django (no mark to honour): UnscopedQuerySet scopes them.
SQLInsertCompiler = django.SQLInsertCompiler
SQLDeleteCompiler = django.SQLDeleteCompiler


class SQLUpdateCompiler(_PlatformAware, django.SQLUpdateCompiler):
    pass


class SQLAggregateCompiler(_PlatformAware, django.SQLAggregateCompiler):
    pass
