from django.urls import path
from rest_framework.routers import SimpleRouter

from verticals.api import jobs, registry, views

app_name = "api"

router = SimpleRouter()
router.register("projects", views.ProjectViewSet, basename="project")
router.register(r"projects/(?P<project_id>[^/.]+)/jobs", jobs.JobViewSet, basename="job")
router.register(r"projects/(?P<project_id>[^/.]+)/datasets", registry.DatasetViewSet, basename="dataset")
router.register(r"projects/(?P<project_id>[^/.]+)/models", registry.ModelVersionViewSet, basename="model")
router.register("base-models", registry.BaseModelViewSet, basename="base-model")
router.register("members", views.MemberViewSet, basename="member")
router.register("invitations", views.InvitationViewSet, basename="invitation")
router.register("api-keys", views.ApiKeyViewSet, basename="api-key")
router.register("audit-events", views.AuditEventViewSet, basename="audit-event")
router.register("partner/tenants", views.PartnerTenantViewSet, basename="partner-tenant")

urlpatterns = [
    path("me", views.MeView.as_view(), name="me"),
    path("tasks/", registry.TaskListView.as_view(), name="tasks"),
    # The predict route as integrators write it, without the trailing slash.
    path("projects/<str:project_id>/models/<str:model_id>/predict", registry.BarePredictView.as_view({"post": "predict"}),
         name="model-predict-bare"),
    *router.urls,
]
