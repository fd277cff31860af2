"""Routes of the settings pages. Mount with ``path("settings/", include("rivya_api.pages.urls"))``."""

from django.urls import path
from django.views.generic import RedirectView

from rivya_api.pages.views import chat, credits, generations, keys, webhooks

app_name = "rivya_pages"

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="rivya_pages:keys"), name="index"),
    path("api-keys", keys.key_list, name="keys"),
    path("api-keys/<str:key_id>", keys.key_detail, name="key-detail"),
    path("api-keys/<str:key_id>/roll", keys.key_roll, name="key-roll"),
    path("api-keys/<str:key_id>/revoke", keys.key_revoke, name="key-revoke"),
    path("credits", credits.credits_index, name="credits"),
    path("credits/alerts", credits.credits_alert_update, name="credits-alerts"),
    path("credits/export.csv", credits.credits_export, name="credits-export"),
    path("credits/wallet", credits.wallet_summary, name="wallet"),
    path("chat/<str:session_id>", chat.chat_detail, name="chat-detail"),
    path("generations", generations.generation_index, name="generations"),
    path("generations/live", generations.generation_live, name="generation-live"),
    path("generations/<str:task_id>", generations.generation_detail, name="generation-detail"),
    path("generations/<str:task_id>/row", generations.generation_row, name="generation-row"),
    path("generations/<str:task_id>/cancel", generations.generation_cancel_view, name="generation-cancel"),
    path("webhooks", webhooks.webhook_index, name="webhooks"),
    path("webhooks/<str:endpoint_id>", webhooks.webhook_detail, name="webhook-detail"),
    path("webhooks/<str:endpoint_id>/enable", webhooks.webhook_enable, name="webhook-enable"),
    path("webhooks/<str:endpoint_id>/rotate-secret", webhooks.webhook_rotate_secret, name="webhook-rotate"),
    path("webhooks/<str:endpoint_id>/test", webhooks.webhook_test, name="webhook-test"),
    path("webhooks/<str:endpoint_id>/delete", webhooks.webhook_delete, name="webhook-delete"),
    path(
        "webhooks/<str:endpoint_id>/events/<str:event_id>/redeliver",
        webhooks.webhook_redeliver,
        name="webhook-redeliver",
    ),
]
