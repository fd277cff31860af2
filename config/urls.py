"""URLs of the reference project: the API, its documentation pages, health probes, metrics, admin and account pages."""

from django.contrib import admin
from django.urls import include, path

from rivya_api import health
from rivya_api.metrics import metrics_view

urlpatterns = [
    path("api/v1/", include("rivya_api.urls")),
    path("docs/", include("rivya_api.guides.urls")),
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    # Prometheus; a 404 unless RIVYA_METRICS_TOKEN is set (see rivya_api.metrics).
    path("metrics", metrics_view, name="metrics"),
    path("admin/", admin.site.urls),
    path("accounts/", include("django.contrib.auth.urls")),
]
