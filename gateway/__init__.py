"""The data plane: routes inference traffic to model versions (grows in the gateway issue)."""
