"""What the harness (`taskbench`) and the service under test (`taskbench_service`) exchange, in one place both
import: the environment contract and URL helpers. Standard library and pydantic only, so the harness reads it
without importing the service, and every queue's environment can import it without the harness's packages."""
