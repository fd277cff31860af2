"""Settings pages and Studio: server-rendered pages for people who click rather than curl.

Mount ``rivya_api.pages.urls`` (namespace ``rivya_pages``) under ``settings/`` and
``rivya_api.pages.studio_urls`` (namespace ``rivya_studio``) under ``studio/``;
the live task updates are the Channels consumer in ``rivya_api.pages.consumers``,
routed by ``rivya_api.pages.routing.websocket_urlpatterns``. Every page requires a
logged-in user and acts as that user's account (``RIVYA_API["ACCOUNT_FOR_USER"]``);
another account's object is a 404, as in the API.
"""
