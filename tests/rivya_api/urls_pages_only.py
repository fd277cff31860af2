"""A host that mounts the API and the settings pages only: no login/logout URLs, docs or Studio."""

from django.urls import include, path

urlpatterns = [
    path("api/v1/", include("rivya_api.urls")),
    path("settings/", include("rivya_api.pages.urls")),
]
