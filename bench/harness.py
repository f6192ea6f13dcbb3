"""What the platform benchmarks share: a temporary folder and a migrated database of their own."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

# Settings a benchmark must not inherit from the shell (it measures the defaults).
CLEARED = ("JOBS_", "CELERY_", "SERVING_", "TRAIN_", "BILLING_", "DATABASE_RLS")


@dataclass(frozen=True)
class Place:
    tmp: Path
    database: str  # what it runs on, in words


def scratch_postgres(url: str) -> tuple[str, str]:
    """A fresh database beside the one `url` names: (its URL, its name)."""
    import dj_database_url
    import psycopg

    config = dj_database_url.parse(url)
    name = f"{config['NAME']}_bench_{os.getpid()}"
    with psycopg.connect(_maintenance_dsn(config), autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    return url.rsplit("/", 1)[0] + "/" + name, name


def drop_postgres(url: str, name: str) -> None:
    import dj_database_url
    import psycopg

    with psycopg.connect(_maintenance_dsn(dj_database_url.parse(url)), autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _maintenance_dsn(config: dict) -> str:
    parts = {
        "dbname": "postgres",
        "user": config.get("USER"),
        "password": config.get("PASSWORD"),
        "host": config.get("HOST"),
        "port": config.get("PORT"),
    }
    return " ".join(f"{key}={value}" for key, value in parts.items() if value)


@contextmanager
def migrated_platform(label: str, *, keep: bool = False) -> Iterator[Place]:
    """Django set up on a migrated database of the benchmark's own, with one torch thread: a scratch
    database beside the one DATABASE_URL names when that is PostgreSQL (dropped at the end),
    otherwise a temporary SQLite file; the folder (and the scratch database) stay with `keep`."""
    tmp = Path(tempfile.mkdtemp(prefix=f"verticals-bench-{label}-"))
    given = os.environ.get("DATABASE_URL", "")
    scratch = None
    if given.startswith(("postgres://", "postgresql://")):
        url, scratch = scratch_postgres(given)
        database = f"PostgreSQL (scratch database {scratch})"
    else:
        url, database = f"sqlite:///{tmp / 'bench.sqlite3'}", "SQLite (temporary file)"
    for name in [n for n in os.environ if n.startswith(CLEARED)]:
        del os.environ[name]
    os.environ.update(
        DJANGO_SETTINGS_MODULE="verticals.config.settings",
        DATABASE_URL=url,
        VERTICALS_VAR_DIR=str(tmp / "var"),
        TORCH_THREADS="1",
        HF_HUB_OFFLINE="1",
        TRAIN_DEVICE="cpu",
    )
    try:
        import django

        django.setup()
        import torch
        from django.core.management import call_command

        torch.set_num_threads(1)
        call_command("migrate", verbosity=0)
        yield Place(tmp, database)
    finally:
        from django.db import connections

        connections.close_all()
        if keep:
            print(f"kept {tmp}" + (f" and the database {scratch}" if scratch else ""))
        else:
            shutil.rmtree(tmp, ignore_errors=True)
            if scratch:
                drop_postgres(given, scratch)
