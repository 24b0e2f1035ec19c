"""A/B experiments: the types (domain), sticky assignment of keys to arms (assignment),
always-valid results (sequential, readout) with the fixed-horizon view (fixed), CUPED (cuped),
adaptive allocation (bandit), decisions under a model's lock (rules), use cases (service)."""
