"""A minimal host project whose account is its own Organization model."""
