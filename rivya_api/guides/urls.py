"""Routes of the documentation pages (no trailing slashes below the index)."""

from django.urls import path

from rivya_api.guides import views

app_name = "rivya_docs"

urlpatterns = [
    path("", views.index, name="index"),
    path("quickstart", views.quickstart, name="quickstart"),
    path("authentication", views.authentication, name="authentication"),
    path("credits", views.credits, name="credits"),
    path("models", views.models, name="models"),
    path("sdk", views.sdk, name="sdk"),
    path("webhooks", views.webhooks, name="webhooks"),
]
