"""taskbench: measure when FastAPI BackgroundTasks stop being enough and Celery is needed."""

__version__ = "0.1.0"
