"""The auditors' charts, drawn on the server as SVG by pygal.

Shown as images, so no script runs in the page; pygal's own configuration
script is taken out of each drawing all the same. Colours are dark on white
and each chart has its numbers in a table beside it, so the charts read on
paper and to a screen reader.
"""

from __future__ import annotations

from xml.etree import ElementTree

import pygal
from pygal.style import Style

from audit.reporting import Report

_STYLE = Style(
    background="white", plot_background="white", foreground="#0b0c0c",
    foreground_strong="#0b0c0c", foreground_subtle="#505a5f", opacity=".9",
    opacity_hover="1", font_family="Arial, Helvetica, sans-serif",
    colors=("#1d70b8", "#d4351c", "#00703c", "#f47738", "#4c2c92", "#b58840", "#5694ca",
            "#912b88", "#85994b", "#28a197", "#6f72af", "#505a5f"),
    title_font_size=16, label_font_size=12, major_label_font_size=12,
    legend_font_size=12, value_font_size=12)

_SIZE = {"width": 760, "height": 380}


def _svg(chart: pygal.graph.graph.Graph) -> bytes:
    tree = chart.render_tree()
    for parent in tree.iter():
        for child in list(parent):
            if isinstance(child.tag, str) and child.tag.endswith("script"):
                parent.remove(child)
    return b"<?xml version='1.0' encoding='utf-8'?>\n" + ElementTree.tostring(tree)


def _config() -> dict[str, object]:
    return {"style": _STYLE, "js": [], "legend_at_bottom": True, "print_values": False,
            "show_y_guides": True, "no_data_text": "nothing to show", **_SIZE}


def shares_by_purpose_month(r: Report) -> bytes:
    """Routed shares per purpose per month, stacked by purpose."""
    months = sorted({m for _, m in r.by_purpose_month})
    purposes = sorted({p for (p, _), c in r.by_purpose_month.items() if c["routed"]})
    chart = pygal.StackedBar(title="Shares routed, by purpose and month", x_title="month",
                             y_title="shares", **_config())
    chart.x_labels = months
    for p in purposes:
        chart.add(p, [r.by_purpose_month[(p, m)]["routed"] or None
                      if (p, m) in r.by_purpose_month else None for m in months])
    return _svg(chart)


def refusals_by_reason(r: Report) -> bytes:
    chart = pygal.HorizontalBar(title="Refusals by reason", x_title="refusals", **_config())
    for reason, n in sorted(r.refusals_by_reason.items(), key=lambda x: (-x[1], x[0])):
        chart.add(reason, n)
    return _svg(chart)


def without_consent_by_ground(r: Report) -> bytes:
    grounds = sorted(r.without_consent_by_ground)
    chart = pygal.StackedBar(title="Shares routed without consent, by ground",
                             x_title="ground", y_title="shares", **_config())
    chart.x_labels = grounds
    for status, label in (("not_sought", "consent not sought"),
                          ("refused", "consent refused")):
        chart.add(label, [r.without_consent_by_ground[g].get(status, 0) or None
                          for g in grounds])
    return _svg(chart)


CHARTS = {
    "purpose-month": shares_by_purpose_month,
    "refusals": refusals_by_reason,
    "without-consent": without_consent_by_ground,
}
