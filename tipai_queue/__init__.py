"""TiPAI queue: find where a generated image fails its prompt, through a Celery queue."""
