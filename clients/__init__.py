"""kerve's clients: the Python ``Client`` and the ``kerve`` command line."""


def __getattr__(name):  # lazy: importing kerve.clients stays cheap
    if name == "Client":
        from kerve.clients.client import Client

        return Client
    raise AttributeError(name)


__all__ = ["Client"]
