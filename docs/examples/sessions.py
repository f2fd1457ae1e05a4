"""A ``client_callable``: sessions use the client the application made."""


def session_client(request, **redis_options):
    """Reuse the client that the application made at start-up."""
    return request.registry.redis_client
