from django.contrib import admin
from django.urls import include, path
from orgs.views import OrganizationView

urlpatterns = [
    path("admin/", admin.site.urls),
    path("org-api/me", OrganizationView.as_view()),
    # Rivya (docs/integration.md, "URLs"):
    path("api/v1/", include("rivya_api.urls")),
    path("docs/", include("rivya_api.guides.urls")),
    path("settings/", include("rivya_api.pages.urls")),
    path("studio/", include("rivya_api.pages.studio_urls")),
]
