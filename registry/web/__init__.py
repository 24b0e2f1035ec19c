"""The registry's one web layer (Litestar), assembled by the composition root (modelyard/app.py):

app.py       every route the registry serves (REST, MLflow, console) and the health probes
state.py     `WebState`: the running parts, one typed object on `app.state`, read by handlers
errors.py    the one mapping of errors to HTTP, for REST, the MLflow dialect and the console
metrics.py   the registry's Prometheus metrics and `/metrics` (`RegistryMetricsPlugin`)
tracing.py   a SERVER span per call when tracing is on (`RegistryTracingPlugin`)
forwarded.py which peers may say a request came over TLS (`X-Forwarded-Proto`)
api/         REST under /api/v1          mlflow/   the MLflow-compatible registry
console/     the web console under /ui
"""
