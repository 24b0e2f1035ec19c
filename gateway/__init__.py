"""The data plane: routes inference traffic to model versions. From the outside in:

server/       the fast HTTP/1.1 server (the gateway's paths; the rest handed to uvicorn)
front.py      the HTTP front: a request in, a `Reply` out; the BentoML JSON passthrough
oip/          the Open Inference Protocol: its calls (front.py) and its pure codecs
request.py    reading a request: its call, pins, sticky key (pure)
routing.py    the routing decision (pure); draws.py, its per-model draw sequence;
              buckets.py, the sticky keys' buckets remembered
forward.py    choose, send, measure, name the version in the answer, offer the shadow copy
resilience.py load shedding, breakers (breaker.py), fallback to stable, around a Transport
transport/    the Transport Protocol, the keep-alive HTTP/1.1 pools, a MockTransport
hooks.py      where an observer hears a request's life; traced.py, OpenTelemetry spans
              (spans.py: recorded as plain tuples, exported by another process)
metrics.py    counts, latency and windows; exposition.py, /metrics via prometheus_client
shadow.py     shadow copies and their agreement; follow.py, report.py, health.py: the
              route feed, the windows sent back, the upstreams' first health checks
runtime.py    assembles a running gateway; status.py, api.py: what the registry shows
errors.py     the error tree; reply.py maps it to status codes
"""
