"""A REDCap-compatible API over a Peerlens study (``POST /studies/{id}/redcap/api/``)."""
