"""The public import path of the Python client (`parley.clients` holds the code)."""

from parley.clients import (
    Ack,
    ClientClosed,
    ClientStats,
    ConnectionState,
    Event,
    EventStream,
    Message,
    ParleyClient,
    ParleyClientError,
    Receipt,
    TransportName,
    TransportStats,
    Unauthenticated,
)

__all__ = [
    "Ack",
    "ClientClosed",
    "ClientStats",
    "ConnectionState",
    "Event",
    "EventStream",
    "Message",
    "ParleyClient",
    "ParleyClientError",
    "Receipt",
    "TransportName",
    "TransportStats",
    "Unauthenticated",
]
