"""Instrument definitions as data and one scoring engine."""
