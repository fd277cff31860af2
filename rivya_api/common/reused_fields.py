"""Serializer fields copied once per thread, not once per request (DRF's ``Serializer.get_fields``).

DRF gives every serializer instance its own copy of the class's declared fields:
``copy.deepcopy``, which rebuilds each field, and each nested serializer with all of
its fields, from the arguments it was declared with. For the chat request (about
thirty fields with the nested message serializer) that copy was three quarters of
validating it, on every turn. ``ReusedFieldsMixin`` keeps one copy per thread and
per serializer class and hands it to each new instance, which binds it to itself
as DRF always does (``BindingDict``: a field's ``parent``, hence its ``root`` and
``context``, become the new instance's). Validation keeps nothing in a field that
the next validation does not set again, and a thread validates one request at a
time, so a copy is never shared by two validations at once. Nested serializers
(the copy's own) keep their fields from their first use.

Use it on a serializer whose result is taken as soon as it is made (a view's
``is_valid``, a body's ``.data``), not on one whose ``.data`` or ``.errors`` is
read after another instance of its class was made in the same thread. Under
ASGI a sync view's thread is reused too (``config.request_threads``). Off:
``RIVYA_API["SERIALIZER_FIELDS_REUSED"] = False`` (DRF's copy per instance);
``tests/rivya_api/test_reused_fields.py`` compares both on the chat request's corpus
and the credits body.
"""

from __future__ import annotations

import threading
from typing import Any

from rivya_api.conf import api_settings

_copies = threading.local()


# Put before the serializer class in the bases (see the module docstring). No docstring here: a
# serializer without its own would publish this one as its OpenAPI description.
class ReusedFieldsMixin:
    def get_fields(self) -> dict[str, Any]:
        # A nested serializer is part of its root's copy: it computes its fields once, itself.
        if not api_settings.SERIALIZER_FIELDS_REUSED or getattr(self, "parent", None) is not None:
            return super().get_fields()  # type: ignore[misc]
        copies = _copies.__dict__.setdefault("by_class", {})
        copy = copies.get(type(self))
        if copy is None:
            fields = super().get_fields()  # type: ignore[misc]
            copy = copies[type(self)] = [(name, field, field.source) for name, field in fields.items()]
        # Field.bind refuses a source equal to the name, which its first bind filled in: as declared again.
        for _, field, source in copy:
            field.source = source
        return {name: field for name, field, _ in copy}
