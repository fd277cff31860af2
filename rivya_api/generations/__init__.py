"""Generations: asynchronous image, video and audio jobs, and the providers that make the media."""
