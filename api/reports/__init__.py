"""The trial report (CONSORT flow, baseline table, outcomes, harms, attrition, reproducibility) and the
screening log it starts from."""
