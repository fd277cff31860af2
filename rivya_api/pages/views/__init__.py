"""Views of the settings pages, one module per page (keys, credits, webhooks, generations, studio)."""
