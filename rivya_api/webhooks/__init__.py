"""The webhooks resource: ``/api/v1/webhooks`` (endpoints) and ``/api/v1/webhook-events`` (the event log)."""
