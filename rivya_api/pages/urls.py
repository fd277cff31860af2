"""Routes of the settings pages. Mount with ``path("settings/", include("rivya_api.pages.urls"))``."""

from django.urls import path
from django.views.generic import RedirectView

from rivya_api.pages.views import keys

app_name = "rivya_pages"

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="rivya_pages:keys"), name="index"),
    path("api-keys", keys.key_list, name="keys"),
    path("api-keys/<str:key_id>", keys.key_detail, name="key-detail"),
    path("api-keys/<str:key_id>/roll", keys.key_roll, name="key-roll"),
    path("api-keys/<str:key_id>/revoke", keys.key_revoke, name="key-revoke"),
]
