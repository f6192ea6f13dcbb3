"""Billing under /api/v1/, one module per resource: plans and the subscription (`plans`), usage and
the staff ingest of usage events (`usage`), invoices and credit notes (`invoices`), staff insights
(`insights`), the partner console's price book, tenants' plans, revenue, growth and invoices
(`partner`) and its brand (`brand`); `formatting` and `queries` hold what they share.

The rules live in `verticals.billing` (services) and `verticals.tenancy`; these modules parse
requests, call them and shape the answers.
"""
