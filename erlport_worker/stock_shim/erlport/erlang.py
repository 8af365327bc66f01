"""Stock ErlPort's ``erlport.erlang``: its exceptions here, its functions from the worker.

The worker sets ``call``, ``cast``, ``self``, ``make_ref``, ``set_encoder``,
``set_decoder``, ``set_message_handler`` and the three ``set_default_*``
functions at start-up (see ``erlport_worker.stock_api``); outside a running
worker they are absent, as they are under stock ErlPort before it starts.
"""


class Error(Exception):
    """Base class of ErlPort's errors."""


class InvalidMessage(Error):
    """A protocol message of the wrong shape."""


class UnknownMessage(Error):
    """A protocol message with an unknown tag."""


class UnexpectedMessage(Error):
    """A protocol message that nobody waits for."""


class UnexpectedResponses(UnexpectedMessage):
    """Replies left over that nobody waits for."""


class DuplicateMessageId(Error):
    """Two replies with one id."""


class CallError(Error):
    """A call to Erlang failed; ``value`` is the reason.

    The error term ``(language, type, value, stacktrace)`` is split into those
    four attributes; any other term ``T`` counts as ``(None, None, T, [])``.
    """

    def __init__(self, value):
        if not (type(value) is tuple and len(value) == 4):
            value = (None, None, value, [])
        self.language, self.type, self.value, self.stacktrace = value
        super().__init__(value)
