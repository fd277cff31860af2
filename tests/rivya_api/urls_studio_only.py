"""A host that mounts the API and Studio only: no settings pages, docs or auth URLs."""

from django.urls import include, path

urlpatterns = [
    path("api/v1/", include("rivya_api.urls")),
    path("studio/", include("rivya_api.pages.studio_urls")),
]
