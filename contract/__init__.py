"""What the registry and the gateway share, and nothing else: the route table (routes), the traffic
policy and its sticky buckets (traffic), the windows of live traffic (windows), health and
readiness verdicts (health). Pure data and pure functions; imports nothing of ours."""
