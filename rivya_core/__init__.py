"""What every Rivya app shares: the settings-object class, the account model setting, public ids and the root error.

It imports no other Rivya package, and every Rivya app may import it; the
dependency direction is ``rivya_api -> {rivya_billing, rivya_webhooks} -> rivya_core``.
It is a plain package, not a Django app: nothing to add to ``INSTALLED_APPS``.
``__version__`` is the one version of the ``rivya-api`` distribution.
"""

__version__ = "0.2.0"
