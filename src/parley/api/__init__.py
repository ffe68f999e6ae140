"""REST API: FastAPI routers grouped by resource, request/response schemas, auth dependencies."""
