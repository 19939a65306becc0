"""Console safety pages: the study's unresolved alerts, acknowledged from the list."""
