"""Console pages of process evaluation: peer groups, sessions, delivery and registers."""
