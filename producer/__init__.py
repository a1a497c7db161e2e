"""The producer: turns a source of images into a run and one Celery task per image."""
