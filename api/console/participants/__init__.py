"""Console pages of one participant: enrolment, the participant page, staff entry, links, status."""
