"""The prediction API: FastAPI app, routes, authentication and rate limiting."""
