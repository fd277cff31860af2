"""The human documentation pages: authentication, credits, the model reference, the quick start.

Rendered from templates (``templates/rivya_api/docs/``) on the shared base layout;
the model reference is generated from the live catalog. Mount with
``path("docs/", include("rivya_api.guides.urls"))``.
"""
