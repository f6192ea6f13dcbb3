"""PostgreSQL with row-level security: Django's backend, telling the database whose rows each
statement may see (see base.py)."""
