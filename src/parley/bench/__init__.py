"""`parley bench`: a load generator that runs beside (never inside) a Parley server.

`command` is the CLI entry, `scenarios` drives the clients, `fleet` holds the WebSocket
connections and what they saw, `servers` starts and watches server processes, `stats` turns
samples into percentiles, and `report` prints the table and writes the JSON and HTML page.
"""
