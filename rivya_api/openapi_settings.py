"""drf-spectacular settings of Rivya's OpenAPI document.

Rivya's own document views apply them (``custom_settings``), so the document is
the same whatever the host's ``SPECTACULAR_SETTINGS`` say, and the host's own
schema keeps its settings. Plain data with no Django import, so a project's
settings module may import it (the reference project does, for ``manage.py
spectacular``).
"""

from __future__ import annotations

from typing import Any

SPECTACULAR_SETTINGS: dict[str, Any] = {
    "TITLE": "Rivya API",
    "DESCRIPTION": "Image, video, audio and chat models as a paid public API.",
    "VERSION": "1.0.0",
    "OAS_VERSION": "3.1.0",
    "COMPONENT_SPLIT_REQUEST": True,
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    "SCHEMA_PATH_PREFIX_TRIM": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # Only Rivya's own operations: a host's DRF views in the same URLconf stay out of this document.
    "PREPROCESSING_HOOKS": ["rivya_api.common.schema.preprocess_rivya_endpoints"],
    # Standard errors on every operation, no "default" responses, X-Request-Id documented.
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "rivya_api.common.schema.postprocess_schema",
        # Idempotency-Key header and its 400/409/422 on every idempotent POST, merged into the
        # responses the views and the hook above already document.
        "rivya_api.idempotency.schema.postprocess_idempotency",
    ],
    # Enum component names that say what they are (and never collide across resources).
    "ENUM_NAME_OVERRIDES": {
        "ErrorTypeEnum": "rivya_api.common.schema.ERROR_TYPES",
        "ModelKindEnum": "rivya_api.catalog.spec.KINDS",
        "PriceTermTypeEnum": "rivya_api.catalog.serializers.PRICE_TERM_TYPES",
        "FilePurposeEnum": "rivya_api.files.models.File.Purpose",
        "FileUploadPurposeEnum": "rivya_api.files.services.UPLOAD_PURPOSE_VALUES",
        "LedgerEntryTypeEnum": "rivya_api.credits.serializers.ENTRY_TYPES",
        "ApiKeyStatusEnum": "rivya_api.keys.serializers.KEY_STATUSES",
        "ApiKeyScopeEnum": "rivya_api.keys.scopes.SCOPES",
        "CreditLimitWindowEnum": "rivya_api.keys.serializers.WINDOWS",
    },
}
