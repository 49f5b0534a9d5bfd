"""The service under test: one FastAPI app per implementation's environment, its jobs run by BackgroundTasks
or by that queue's worker (taskbench_service.implementations)."""
