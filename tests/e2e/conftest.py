"""Fixtures shared by the browser tests: the module's app under uvicorn and headless Chromium."""

from tests.e2e.test_participant_form import browser, server  # noqa: F401 (fixtures)
