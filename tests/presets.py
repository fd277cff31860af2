"""Named settings presets for ``@pytest.mark.rivya_settings(PRESET)``."""

TIGHT_RATE_LIMIT = {"RIVYA_API": {"RATE_LIMIT": "3/min"}}
