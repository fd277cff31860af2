"""URLs of the reference project: API, documentation, settings and Studio pages, health, metrics, admin, login."""

from django.contrib import admin
from django.urls import include, path

from config import views
from rivya_api import health
from rivya_api.metrics import metrics_view

urlpatterns = [
    # Somewhere useful for a browser at the root: the settings pages when signed in, else the docs.
    path("", views.home, name="home"),
    path("favicon.ico", views.favicon, name="favicon"),
    path("api/v1/", include("rivya_api.urls")),
    path("docs/", include("rivya_api.guides.urls")),
    path("settings/", include("rivya_api.pages.urls")),
    path("studio/", include("rivya_api.pages.studio_urls")),
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    # Prometheus; a 404 unless RIVYA_METRICS_TOKEN is set (see rivya_api.metrics).
    path("metrics", metrics_view, name="metrics"),
    path("admin/", admin.site.urls),
    path("accounts/", include("django.contrib.auth.urls")),
]
