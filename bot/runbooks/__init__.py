"""runbooks."""
