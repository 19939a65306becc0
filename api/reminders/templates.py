"""Message templates: ``str.format`` placeholders from a closed list, checked when a plan is saved.

Placeholders: ``{name}`` (the participant's name, or an empty string), ``{link}`` (personal form
link from the links service when it exists, else the plan's ``form_url``), ``{wave}``,
``{study}``, ``{closes_on}`` (last day of the window, study time zone) and ``{unsubscribe}``.

Examples
--------
>>> problems("Hello {name}, {link}")
[]
>>> problems("Hello {email}")
["unknown placeholder {email}; allowed: closes_on, link, name, study, unsubscribe, wave"]
>>> render("Hi {name}: {link}", {"name": "Ana", "link": "https://x/f/1"})
'Hi Ana: https://x/f/1'
"""

from __future__ import annotations

from string import Formatter

PLACEHOLDERS = ("closes_on", "link", "name", "study", "unsubscribe", "wave")


def fields(template: str) -> set[str]:
    """Placeholder names used in ``template`` (raises ValueError on malformed braces)."""
    return {f for _, f, _, _ in Formatter().parse(template) if f is not None}


def problems(template: str) -> list[str]:
    """Why ``template`` cannot be used (empty list when it can)."""
    try:
        parsed = list(Formatter().parse(template))
    except ValueError as exc:
        return [f"malformed template: {exc}"]
    out = []
    for _, name, spec, conv in parsed:
        if name is None:
            continue
        if name not in PLACEHOLDERS:
            out.append(f"unknown placeholder {{{name}}}; allowed: {', '.join(PLACEHOLDERS)}")
        elif spec or conv:
            out.append(f"placeholder {{{name}}} takes no format spec or conversion")
    return out


def render(template: str, values: dict[str, str]) -> str:
    """Fill a checked template; missing values render as empty strings."""
    return template.format_map({k: values.get(k) or "" for k in PLACEHOLDERS})
