"""A host that mounts the API but not the documentation pages."""

from django.urls import include, path

urlpatterns = [path("api/v1/", include("rivya_api.urls"))]
