"""Progressive rollouts: the state (state), the pure engine `step(state, snapshot, now)`
(engine), the canary judge (judge), decisions under a model's lock (rules), the windows the
judge reads (windows), and the use cases with the scheduler that drives them (service)."""
