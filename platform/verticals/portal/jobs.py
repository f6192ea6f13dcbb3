"""Portal pages for jobs: a list (per project or for the whole tenant), a job page kept live by
HTMX polling of one fragment, and cancelling.

The job page polls `job_live` every second while the job is not finished; the fragment it
gets back replaces the polled element, so a fragment of a finished job, which carries no
polling trigger, stops the polling. The metrics chart is drawn once and fed only the points
the fragment carries (those after the cursor of the previous fragment).
"""

from __future__ import annotations

import json

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone

from verticals.jobs import engine, selectors
from verticals.jobs.models import Job, WebhookDelivery
from verticals.portal.views import _error_text, _is_htmx, tenant_page
from verticals.tenancy.models import Project

Status = Job.Status
PAGE_SIZE = 50
LOG_LINES = 100
DELIVERIES_SHOWN = 20
# Metric points one poll carries at most; a client further behind catches up over the next polls.
POLL_POINTS_MAX = 5000


# --- words for numbers --------------------------------------------------------------------


def eta_words(seconds: float | None) -> str:
    """ "about 2 min left" and the like; empty when there is no estimate."""
    if seconds is None:
        return ""
    seconds = max(0.0, float(seconds))
    if seconds < 10:
        return "a few seconds left"
    if seconds < 50:
        return f"about {int(round(seconds / 5.0) * 5)} s left"
    minutes = max(1, round(seconds / 60.0))
    if minutes < 60:
        return f"about {minutes} min left"
    hours, minutes = divmod(minutes, 60)
    return f"about {hours} h {minutes} min left" if minutes else f"about {hours} h left"


def duration_words(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    seconds = int(max(0.0, seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def job_duration(job: Job, now=None) -> float | None:
    """Seconds the job has run: until it finished, or until now while it runs."""
    if job.started_at is None:
        return None
    end = job.finished_at or (now or timezone.now())
    return (end - job.started_at).total_seconds()


def _number(value: float | None) -> str:
    if value is None:
        return "?"
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


# --- lookups ------------------------------------------------------------------------------


def _project(project_id: str) -> Project:
    # The scoped manager holds the current tenant's rows only: another tenant's id is a 404.
    return get_object_or_404(Project.objects.all(), public_id=project_id)


def _project_and_job(project_id: str, job_id: str) -> tuple[Project, Job]:
    project = _project(project_id)
    job = get_object_or_404(
        Job.objects.select_related("project", "created_by"), project=project, public_id=job_id
    )
    return project, job


def _after(request) -> int | None:
    try:
        return min(max(0, int(request.GET["after"])), 2**31 - 1)
    except (KeyError, ValueError):
        return None


# --- the job page and its live fragment ---------------------------------------------------


def _live_context(
    request,
    project: Project,
    job: Job,
    *,
    after: int | None = None,
    oob: bool = False,
    notice: str = "",
    problem: str = "",
) -> dict:
    # The cursor is read (with the row) before the events: a point written in between may come
    # twice, and the page keeps one point per step; none is missed.
    cursor = job.event_seq
    if after is None or after > cursor:
        points = selectors.metric_series(job)
    else:
        points, cut_at = selectors.metric_points_after(job, after, POLL_POINTS_MAX)
        if cut_at is not None:  # a client far behind: the next poll goes on from there
            cursor = cut_at
    caller = request.caller
    percent = job.percent
    if job.status == Status.SUCCEEDED and percent is None:
        percent = 100.0
    return {
        "project": project,
        "job": job,
        "cursor": cursor,
        "oob": oob,
        "notice": notice,
        "problem": problem,
        "percent": percent,
        "bar_width": percent or 0,
        "current": _number(job.progress_current),
        "total": _number(job.progress_total) if job.progress_total else "",
        "eta": eta_words(job.eta_seconds) if job.status == Status.RUNNING else "",
        "duration": duration_words(job_duration(job)),
        "can_cancel": caller.can("job.cancel")
        and not job.is_terminal
        and job.cancel_requested_at is None,
        "cancelling": job.cancel_requested_at is not None and not job.is_terminal,
        "show_traceback": request.user.is_staff and bool(job.error_traceback),
        "show_worker": request.user.is_staff,
        "result_json": json.dumps(job.result, indent=2, sort_keys=True) if job.result else "",
        "metric_points": points,
        "log": selectors.log_tail(job, LOG_LINES),
    }


@tenant_page("job.view")
def job_detail(request, project_id: str, job_id: str):
    project, job = _project_and_job(project_id, job_id)
    context = _live_context(request, project, job)
    context["params_json"] = json.dumps(job.params, indent=2, sort_keys=True)
    if job.webhook_url:  # the delivery log, as it stands when the page loads
        context["deliveries"] = list(WebhookDelivery.objects.filter(job=job)[:DELIVERIES_SHOWN])
    return render(request, "portal/job_detail.html", context)


@tenant_page("job.view")
def job_live(request, project_id: str, job_id: str):
    """The polled fragment: status, progress, facts, new metric points; the log out of band."""
    project, job = _project_and_job(project_id, job_id)
    response = render(
        request,
        "portal/_job_live.html",
        _live_context(request, project, job, after=_after(request), oob=True),
    )
    response["Cache-Control"] = "no-store"
    return response


@tenant_page("job.cancel", methods=("POST",))
def job_cancel(request, project_id: str, job_id: str):
    project, job = _project_and_job(project_id, job_id)
    notice = problem = ""
    try:
        job = engine.request_cancel(job, request.caller)
    except ValidationError as error:  # it had already finished
        problem = _error_text(error)
    else:
        if job.status == Status.CANCELLED:
            notice = "Job cancelled."
        elif not job.is_terminal:
            notice = "Cancellation requested: the job stops at its next step."
        else:  # it finished while the request was on its way
            problem = f"Job {job.public_id} has already {job.status}; there is nothing to cancel."
    if _is_htmx(request):
        return render(
            request,
            "portal/_job_live.html",
            _live_context(request, project, job, oob=True, notice=notice, problem=problem),
        )
    if problem:
        messages.error(request, problem)
    else:
        messages.success(request, notice)
    return redirect("portal:job_detail", project_id=project.public_id, job_id=job.public_id)


# --- the list -----------------------------------------------------------------------------


@tenant_page("job.view")
def job_list(request, project_id: str | None = None):
    """The jobs of one project (or of the whole tenant), newest first, filtered by status."""
    project = _project(project_id) if project_id else None
    jobs = Job.objects.select_related("project")
    if project is not None:
        jobs = jobs.filter(project=project)
    status = request.GET.get("status", "")
    if status not in Status.values:
        status = ""
    if status:
        jobs = jobs.filter(status=status)
    page = Paginator(jobs, PAGE_SIZE).get_page(request.GET.get("page"))
    now = timezone.now()
    for job in page:
        job.duration_text = duration_words(job_duration(job, now))
    context = {
        "project": project,
        "page": page,
        "status": status,
        "statuses": Status.choices,
        "active": any(not job.is_terminal for job in page),
    }
    return render(request, "portal/jobs.html", context)
