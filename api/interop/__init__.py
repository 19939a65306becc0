"""Interoperability with REDCap: import a data dictionary and a records export into a study, and
export a study as REDCap-shaped files."""
