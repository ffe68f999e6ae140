"""One package per capability: each with its own service, routes and store access."""
