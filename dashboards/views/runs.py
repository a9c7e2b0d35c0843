"""Runs: every run found, its provenance (from the manifest) and its summary table."""

from __future__ import annotations

import polars as pl
import streamlit as st

from dashboards import data, ui

st.title("Runs")
runs = ui.runs_or_stop()


def _records(run: data.Run) -> int:
    return ui.memo(run, "records", lambda: data.count(run.table))


overview = pl.DataFrame(
    [
        {
            "run": run.label,
            "finished": run.run_manifest.finished_at or run.run_manifest.started_at or "–",
            "input": run.run_manifest.input.path or "–",
            "records": _records(run),
            "errors": run.results.error_count,
            "metrics": ", ".join(metric.name for metric in run.metrics) or "–",
            "device": run.run_manifest.runtime.device or "–",
            "evalsuite": run.run_manifest.evalsuite_version or "–",
        }
        for run in runs
    ]
)
st.caption(f"{len(runs)} run{'s' if len(runs) != 1 else ''} found.")
st.dataframe(overview, hide_index=True)

for run in runs:
    st.header(run.label, divider="gray", anchor=False)
    st.caption(f"`{run.path}`")
    if not run.has_manifest:
        st.warning("No manifest beside this file: its provenance (configs, models, versions) is unknown.")
    manifest = run.run_manifest
    runtime = manifest.runtime
    facts = {
        "started": manifest.started_at,
        "finished": manifest.finished_at,
        "duration": None if manifest.duration_s is None else f"{manifest.duration_s:.1f} s",
        "input": manifest.input.path,
        "input sha256": (manifest.input.sha256 or "")[:16] or None,
        "device": " / ".join(value for value in (runtime.device, runtime.dtype) if value) or None,
        "evalsuite": manifest.evalsuite_version,
        "torch": manifest.torch,
        "transformers": manifest.transformers,
    }
    shown = {key: value for key, value in facts.items() if value}
    if shown:
        st.markdown(" · ".join(f"**{key}** {value}" for key, value in shown.items()))

    records = _records(run)
    errors = run.results.error_count
    if records == 0:
        st.info("This run has no scored records." + (f" All {errors} records failed." if errors else ""))
    summary = ui.summary(run)
    if summary.height:
        table = summary.select(
            pl.col("score"),
            pl.Series(
                "better", [ui.direction(run.higher_is_better(name)) for name in summary["score"]], pl.String
            ),
            "mean",
            "std",
            "ci_low",
            "ci_high",
            "n",
            "errors",
        )
        st.dataframe(
            table,
            hide_index=True,
            height=35 * (table.height + 1) + 3,  # every score visible without scrolling
            column_config={
                "better": st.column_config.TextColumn(
                    "better", help="↑ higher is better, ↓ lower is better", width="small"
                ),
                "mean": st.column_config.NumberColumn(format="%.4f"),
                "std": st.column_config.NumberColumn(format="%.4f"),
                "ci_low": st.column_config.NumberColumn("95% CI low", format="%.4f"),
                "ci_high": st.column_config.NumberColumn("95% CI high", format="%.4f"),
            },
        )
    else:
        st.caption("No score columns.")

    if run.metrics and run.has_manifest:
        with st.expander(f"Metrics and models ({len(run.metrics)})"):
            st.dataframe(
                pl.DataFrame(
                    [
                        {
                            "metric": metric.name,
                            "config": ", ".join(f"{k}={v}" for k, v in metric.config.items()),
                            "config hash": metric.config_hash,
                            "better": ui.direction(metric.higher_is_better),
                            "models": ", ".join(metric.models),
                            "evidence": ", ".join(metric.detail_columns),
                        }
                        for metric in run.metrics
                    ]
                ),
                hide_index=True,
            )
            if manifest.models:
                st.dataframe(
                    pl.DataFrame(
                        [
                            {
                                "model": name,
                                "source": info.source or "",
                                "location": info.location or "",
                                "weights sha256": (info.weights_sha256 or "")[:16],
                            }
                            for name, info in manifest.models.items()
                        ]
                    ),
                    hide_index=True,
                )
    described = [error for error in run.results.errors if error]
    if described:
        with st.expander(f"{len(described)} bad records"):
            st.dataframe(
                pl.DataFrame([{k: str(v) for k, v in error.items()} for error in described[:1000]]),
                hide_index=True,
            )
            if len(described) > 1000:
                st.caption(f"The first 1,000 of {len(described):,}; all are in the run's errors file.")
