"""MLflow-compatible webhooks: events, signatures and retry policy (events, pure) and the
delivery worker (delivery)."""
