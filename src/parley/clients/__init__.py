"""The Python client of Parley's real-time API: `from parley.client import ParleyClient`."""

from parley.clients.invariants import TransportStats
from parley.clients.listeners import EventStream
from parley.clients.models import (
    Ack,
    ClientClosed,
    Event,
    Message,
    ParleyClientError,
    Receipt,
    TransportName,
    Unauthenticated,
)
from parley.clients.python import ClientStats, ConnectionState, ParleyClient

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
