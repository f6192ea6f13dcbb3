from django.urls import path
from rest_framework.routers import SimpleRouter

from verticals.api import jobs, views

app_name = "api"

router = SimpleRouter()
router.register("projects", views.ProjectViewSet, basename="project")
router.register(r"projects/(?P<project_id>[^/.]+)/jobs", jobs.JobViewSet, basename="job")
router.register("members", views.MemberViewSet, basename="member")
router.register("invitations", views.InvitationViewSet, basename="invitation")
router.register("api-keys", views.ApiKeyViewSet, basename="api-key")
router.register("audit-events", views.AuditEventViewSet, basename="audit-event")
router.register("partner/tenants", views.PartnerTenantViewSet, basename="partner-tenant")

urlpatterns = [path("me", views.MeView.as_view(), name="me"), *router.urls]
