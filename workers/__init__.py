"""Celery workers: generate images, score them per patch with CLIP, draw heatmaps and pair best/worst."""
