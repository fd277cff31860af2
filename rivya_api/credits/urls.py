"""Routes of the credits resource (no trailing slashes); included by ``rivya_api.urls``."""

from django.urls import path

from rivya_api.credits.views import CreditsViewSet

urlpatterns = [
    path("credits", CreditsViewSet.as_view({"get": "retrieve"}), name="credits"),
    path(
        "credits/alerts",
        CreditsViewSet.as_view({"get": "alerts", "patch": "alerts_update"}),
        name="credits-alerts",
    ),
    path("credits/ledger", CreditsViewSet.as_view({"get": "ledger"}), name="credits-ledger"),
]
