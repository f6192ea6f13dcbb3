"""`migrate` as Django's, run as the database's owner; then the application's role gets its grants."""

from django.core.management.commands.migrate import Command as DjangoMigrate
from django.db import connections

from verticals.tenancy import rls


class Command(DjangoMigrate):
    def handle(self, *args, **options):
        connection = connections[options["database"]]
        with rls.as_owner(
            connection, "migrations change the schema and may move every tenant's rows"
        ):
            super().handle(*args, **options)
            rls.provision_app_role(connection)
