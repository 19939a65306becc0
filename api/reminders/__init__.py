"""Scheduled follow-up reminders: plans per wave, a reminder outbox, a planner and dispatchers.

The planner turns each study's reminder plans into outbox rows with set-based SQL; any number of
workers claim due rows (``FOR UPDATE SKIP LOCKED`` on PostgreSQL), send them outside the
transaction and record the outcome. See the "Reminders" section of README.md.
"""
