"""The registry's REST API (Litestar) under `/api/v1`; `app.api_routes` assembles it."""
