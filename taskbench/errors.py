"""The harness's exceptions, one tree: the CLI turns each into one line and an exit code.

TaskbenchError
 ├── UsageError              exit 2: something the user can fix on the command line or in the environment
 │    ├── EnvironmentBuildError   an implementation's environment could not be built (offline, a conflict)
 │    └── SchemaError             a result file this taskbench does not read
 └── StackError              exit 1: a process of the stack did not start or stopped answering
"""


class TaskbenchError(Exception):
    """Anything taskbench raises on purpose, with a message meant for the user."""


class UsageError(TaskbenchError):
    """Something the user can fix by changing the command line or the environment."""


class EnvironmentBuildError(UsageError):
    """An implementation's environment could not be built: offline and not cached, or a resolver conflict."""


class SchemaError(UsageError):
    """A result file of a schema version this taskbench does not read."""


class StackError(TaskbenchError):
    """A process of the stack did not start or stopped answering."""
