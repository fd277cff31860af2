"""Settings of a live test server: this test run's settings plus the idempotency test routes.

``RIVYA_TEST_BASE_SETTINGS`` names the settings module of the test run (the
reference project or the orghost tier), so the server sees the same account
model; the lease is short so a dead attempt's key frees within the test.
"""

import importlib
import os

_base = importlib.import_module(os.environ.get("RIVYA_TEST_BASE_SETTINGS", "config.settings"))
globals().update({name: value for name, value in vars(_base).items() if name.isupper()})

ROOT_URLCONF = "tests.rivya_api.idempotency.urls"
RIVYA_API = {**_base.RIVYA_API, "IDEMPOTENCY_LEASE_SECONDS": int(os.environ.get("RIVYA_TEST_IDEMPOTENCY_LEASE", "4"))}
RIVYA_IN_PROCESS_BEAT = False
