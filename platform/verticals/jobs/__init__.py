"""Jobs: the state machine, Celery dispatch, runners and their context, events, webhooks, reaper.

PostgreSQL (or the embedded SQLite file) is the source of truth; the broker only carries
"run job X". See `engine` for the lifecycle and `runners` for the contract a job kind fulfils.
"""
