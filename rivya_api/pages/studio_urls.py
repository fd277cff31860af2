"""Routes of Studio. Mount with ``path("studio/", include("rivya_api.pages.studio_urls"))``."""

from django.urls import path

from rivya_api.pages.views import studio

app_name = "rivya_studio"

urlpatterns = [
    path("", studio.studio, name="index"),
    path("price", studio.studio_price, name="price"),
]
