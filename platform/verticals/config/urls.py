"""Root URL configuration."""

from django.conf import settings
from django.conf.urls.static import static
from django.contrib import admin
from django.http import JsonResponse
from django.urls import include, path, re_path
from django.views import defaults
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from verticals.api.errors import error_response, json_or_default


@csrf_exempt  # a write to no route is 404 like any other call to it, not a CSRF refusal
def api_route_not_found(request, rest=""):
    """Unknown routes under the API prefixes answer in the API's error shape, DEBUG or not."""
    return error_response(
        request, 404, "not_found", f"No API route {request.path}: see /api/docs/."
    )


def healthz(request):
    """Liveness for load balancers and compose health checks: the process answers."""
    return JsonResponse({"status": "ok"})


urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("admin/", admin.site.urls),
    path("api/v1/", include("verticals.api.urls")),
    path("v1/", include("verticals.api.compat.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("api/redoc/", SpectacularRedocView.as_view(url_name="schema"), name="api-redoc"),
    re_path(r"^(?:api|v1|v2)/(?P<rest>.*)$", api_route_not_found, name="api-not-found"),
    path("", include("verticals.portal.urls")),
    *static(settings.MEDIA_URL, document_root=settings.MEDIA_ROOT),
]

handler400 = json_or_default(
    defaults.bad_request, 400, "bad_request", "The request could not be understood."
)
handler403 = json_or_default(
    defaults.permission_denied, 403, "permission_denied", "You may not do this."
)
handler404 = json_or_default(
    defaults.page_not_found, 404, "not_found", "Not found: no such route or object."
)
handler500 = json_or_default(
    defaults.server_error,
    500,
    "server_error",
    "Something went wrong on our side; it has been logged.",
)
