"""Analyst cohort exports: long, wide and item shapes in CSV, JSON, Parquet, Stata and SPSS, streamed by
participant batches, de-identified by role, each with a data dictionary."""
