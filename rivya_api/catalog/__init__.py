"""The public model catalog: models declared in ``RIVYA_API["MODELS"]``.

Other packages call the selectors in ``rivya_api.catalog.selectors``; the shape
of an entry is documented in ``rivya_api.catalog.spec`` and price rules in
``rivya_api.catalog.pricing``.
"""
