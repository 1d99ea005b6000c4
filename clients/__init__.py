"""kerve's clients: the Python ``Client`` and the ``kerve`` command line."""

DEFAULT_SERVER = "localhost:8500"
"""Where clients look for a kerve server unless told (``--server``, ``KERVE_SERVER``)."""


def __getattr__(name):  # lazy: importing kerve.clients stays cheap
    if name == "Client":
        from kerve.clients.client import Client

        return Client
    if name == "ServerError":
        from kerve.clients.errors import ServerError

        return ServerError
    raise AttributeError(name)


__all__ = ["Client", "DEFAULT_SERVER", "ServerError"]
