"""Generations: asynchronous image, video and audio jobs with public task ids."""
