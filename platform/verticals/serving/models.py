"""Serving keeps no tables of its own: what a call used is a billing usage event
(verticals.billing.models.UsageEvent)."""
