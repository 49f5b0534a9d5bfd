"""The service under test: one FastAPI app, jobs run by BackgroundTasks or by a Celery worker."""
