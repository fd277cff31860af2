"""Models of rivya_api, one import line per resource sub-package (keys, files, …)."""
