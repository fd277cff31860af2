"""Rivya's outbound webhooks: endpoints, an event outbox and signed delivery."""
