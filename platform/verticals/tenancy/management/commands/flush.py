"""`flush` as Django's, run as the database's owner (TRUNCATE passes row-level security, so the
application's role is never given it)."""

from django.core.management.commands.flush import Command as DjangoFlush
from django.db import connections

from verticals.tenancy import rls


class Command(DjangoFlush):
    def handle(self, **options):
        with rls.as_owner(connections[options["database"]], "flush empties every table"):
            super().handle(**options)
