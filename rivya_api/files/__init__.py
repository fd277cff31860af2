"""The Files API: reference media, chat attachments and generation outputs.

Other packages call ``rivya_api.files.services.file_create`` to store bytes as a
file object and the selectors in ``rivya_api.files.selectors`` to read them.
"""
