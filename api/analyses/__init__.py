"""Analyses of a study's current export through the service: routes, request checks, plot artefacts."""
