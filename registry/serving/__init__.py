"""What runs and where traffic goes: which versions can be served (rules), the route table built
from registry state (routes) and its long-poll feed (feed), the local deployer's loop
(deployments) and the readiness verdict of a serving process (readiness)."""
