"""Celery tasks. The broker carries only ids; the database row says what to do."""

from celery import shared_task

from verticals.jobs import engine, webhooks, worker


@shared_task(
    name="verticals.jobs.run", acks_late=True, reject_on_worker_lost=True, ignore_result=True
)
def run_job(job_id: str) -> str | None:
    """Run job `job_id`. Acked after it ends; a message redelivered after a worker died does nothing."""
    return worker.execute(job_id)


@shared_task(name="verticals.jobs.reap", ignore_result=True)
def reap() -> dict:
    """Fail or requeue jobs whose worker stopped heartbeating; resend lost dispatches (beat runs it)."""
    return engine.reap()


@shared_task(name="verticals.jobs.deliver_webhook", acks_late=True, ignore_result=True)
def deliver_webhook(delivery_id: int) -> str:
    return webhooks.deliver(delivery_id)


@shared_task(name="verticals.jobs.retry_webhooks", ignore_result=True)
def retry_webhooks() -> int:
    """Send the webhook deliveries whose next try is due (beat runs it)."""
    return webhooks.send_due()
