"""Django signals a host can connect to. Each is sent after the transaction that caused it commits.

``generation_updated``
    A generation changed status (queued, running, succeeded, failed, canceled) or progress.
    Keyword arguments: ``account_id`` (the account's primary key), ``task`` (the task as
    ``GET /api/v1/generations/{id}`` shows it, with ``status`` and ``sequence``, which grows
    with every update of the task). Sender: ``rivya_api.generations.models.GenerationTask``.

    from django.dispatch import receiver
    from rivya_api.signals import generation_updated

    @receiver(generation_updated)
    def notify_owner(sender, account_id, task, **kwargs):
        if task["status"] == "succeeded":
            ...

Receivers run in the process that made the change (a web process or a worker), after
commit; an exception in one is logged and does not reach the others or the change.
"""

from django.dispatch import Signal

generation_updated = Signal()
