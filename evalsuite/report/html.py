"""The report as one self-contained HTML file: styles, the Vega-Embed bundle and the chart data inlined,
so it opens offline, from a CI artifact or an e-mail, with no server and no network."""

from __future__ import annotations

import functools
import json
from importlib import resources
from typing import Any

from evalsuite.errors import MissingDependencyError
from evalsuite.report.charts import difference_spec, histogram_spec
from evalsuite.report.content import Report, record_texts
from evalsuite.report.evidence import evidence_html
from evalsuite.report.format import difference, interval, number, p_value

__all__ = ["render_html"]


def render_html(report: Report) -> str:
    """The whole page; charts are drawn by the inlined Vega-Embed when the page opens (SVG)."""
    try:
        import jinja2
    except ImportError as error:
        raise MissingDependencyError(
            "the HTML report needs jinja2: pip install 'evalsuite[report]'"
        ) from error

    import evalsuite

    summary = {row["score"]: row for row in report.summary.to_dicts()}
    charts: dict[str, dict[str, Any]] = {
        f"histogram-{index}": histogram_spec(column, counts, mean=(summary.get(column) or {}).get("mean"))
        for index, (column, counts) in enumerate(report.histograms.items())
    }
    chart_ids = dict(zip(report.histograms, charts, strict=True))
    if report.comparison is not None:
        charts["differences"] = difference_spec(report.comparison.table, report.comparison.confidence)
    environment = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    environment.filters.update(number=number, difference=difference, p_value=p_value)
    template = environment.from_string(
        resources.files("evalsuite.report").joinpath("page.html.j2").read_text(encoding="utf-8")
    )
    return template.render(
        report=report,
        version=evalsuite.__version__,
        summary=summary,
        interval=interval,
        chart_ids=chart_ids,
        charts_json=_script_json(charts),
        vega_bundle=_vega_embed_bundle(),
        evidence=lambda record, metric: _markup(evidence_html(record, metric)),
        texts=record_texts,
    )


def _markup(html: str) -> Any:
    import markupsafe

    # Evidence HTML is built by evalsuite.report.evidence, which escapes every text it is given.
    return markupsafe.Markup(html)


def _script_json(value: Any) -> Any:
    """JSON safe inside a <script> element: no "</script>" or "<!--" can close it early."""
    import markupsafe

    text = json.dumps(value, allow_nan=False, default=str)
    return markupsafe.Markup(text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026"))


@functools.cache
def _vega_embed_bundle() -> Any:
    """Vega, Vega-Lite and Vega-Embed as one script, matching Altair's Vega-Lite version (vl-convert)."""
    import markupsafe

    try:
        import vl_convert
        from altair.utils._importers import vl_version_for_vl_convert
    except ImportError as error:
        raise MissingDependencyError(
            "the HTML report inlines Vega-Embed from vl-convert: pip install 'evalsuite[report]' "
            "(or write --format markdown, which needs neither)"
        ) from error
    bundle: str = vl_convert.javascript_bundle("window.vegaEmbed = vegaEmbed;", vl_version_for_vl_convert())
    return markupsafe.Markup(bundle.replace("</script", "<\\/script"))
