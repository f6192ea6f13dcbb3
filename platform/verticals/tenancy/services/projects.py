"""Projects of a tenant."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from verticals.tenancy.audit import audit_record
from verticals.tenancy.caller import Caller
from verticals.tenancy.models import Project, Tenant


def _name_clash(name: str) -> ValidationError:
    return ValidationError({"name": f"A project named '{name}' already exists in this tenant."})


def project_create(
    *, tenant: Tenant, name: str, description: str = "", actor: Caller | None = None
) -> Project:
    if Project.objects.filter(tenant=tenant, name=name).exists():
        raise _name_clash(name)
    try:
        with transaction.atomic():
            project = Project.objects.create(
                tenant=tenant,
                name=name,
                description=description,
                created_by=actor.person if actor else None,
            )
            audit_record(
                tenant=tenant,
                actor=actor,
                action="project.create",
                target=project,
                details={"name": name},
            )
    except IntegrityError:  # a concurrent create of the same name
        raise _name_clash(name) from None
    return project


def project_update(*, project: Project, actor: Caller | None = None, **changes) -> Project:
    name = changes.get("name")
    if (
        name is not None
        and Project.objects.filter(tenant=project.tenant, name=name).exclude(pk=project.pk).exists()
    ):
        raise _name_clash(name)
    try:
        with transaction.atomic():
            changed = {
                k: [getattr(project, k), v] for k, v in changes.items() if getattr(project, k) != v
            }
            for field_name, value in changes.items():
                setattr(project, field_name, value)
            project.save()
            audit_record(
                tenant=project.tenant,
                actor=actor,
                action="project.update",
                target=project,
                details=changed,
            )
    except IntegrityError:  # a concurrent rename to the same name
        raise _name_clash(name) from None
    return project


def project_delete(*, project: Project, actor: Caller | None = None) -> None:
    with transaction.atomic():
        audit_record(
            tenant=project.tenant,
            actor=actor,
            action="project.delete",
            target=project,
            details={"name": project.name},
        )
        project.delete()
