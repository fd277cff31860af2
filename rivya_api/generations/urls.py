"""Routes for generations (included by rivya_api.urls)."""

from django.urls import path

from rivya_api.generations.views import GenerationViewSet

collection = GenerationViewSet.as_view({"get": "list", "post": "create"})
detail = GenerationViewSet.as_view({"get": "retrieve"})
cancel = GenerationViewSet.as_view({"post": "cancel"})

urlpatterns = [
    path("generations", collection, name="generation-list"),
    path("generations/<str:task_id>", detail, name="generation-detail"),
    path("generations/<str:task_id>/cancel", cancel, name="generation-cancel"),
]
