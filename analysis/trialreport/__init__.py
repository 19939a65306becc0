"""Rendering of the trial report: the CONSORT flow diagram, Table 1 and the HTML document.

Pure functions over tidy frames (no database, no web): the service gathers the data
(``api/reports``), these modules count and draw.
"""

from .baseline import SKEW_LIMIT, Variable, table1  # noqa: F401
from .consort import EXCLUSION_LABELS, flow_counts, flow_svg  # noqa: F401
from .html import Section, absent, figure_svg, p_text, render_document, table1_html, table_html  # noqa: F401
