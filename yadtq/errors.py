"""Exceptions of the core. Every message is one line a person can act on."""


class YadtqError(Exception):
    """Base of every error YADTQ raises on purpose."""


class InvalidTask(YadtqError):
    """The task is refused before anything is enqueued: unknown name, bad arguments, too large."""


class PermanentTaskError(YadtqError):
    """Raised by a task function when retrying cannot help (bad arguments): fails at once."""


class DecodeError(YadtqError):
    """A message from the wire is not a valid YADTQ task envelope."""


class ServiceUnavailable(YadtqError):
    """Redis or Kafka cannot serve requests right now (unreachable, timed out, loading, busy,
    failing over). Transient: callers wait it out and try again."""


class StoreError(YadtqError):
    """Redis refused this request for good (``WRONGTYPE``, ``OOM command not allowed``, a script
    error...): trying the same request again cannot help. The message starts "Redis refused: "."""


class TaskNotFound(YadtqError):
    """No task with that id."""


class BrokerError(YadtqError):
    """Kafka refused a request for good (not a connection problem): e.g. a commit for partitions
    that moved to another worker."""



class TaskFinished(YadtqError):
    """The task is already final (completed, failed or cancelled): a cancel changes nothing."""
