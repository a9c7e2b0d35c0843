"""Records: search, filter, sort and page through a run; open one record's texts and evidence."""

from __future__ import annotations

import json

import streamlit as st

from dashboards import data, ui
from dashboards.evidence import EvidenceContext, render_evidence

PAGE_SIZES = (25, 50, 100, 250)

st.title("Records")
runs = ui.runs_or_stop()
run = ui.pick_run(runs)
filters = ui.sidebar_filters(run, search=True)
lazy = data.filtered(run, filters)
total = ui.memo(run, "records", lambda: data.count(run.table))
matching = data.count(lazy) if filters.active else total
ui.export_buttons(run, lazy, matching)

schema = run.table.collect_schema()
sortable = [
    name
    for name in [*run.score_columns, *run.metadata_columns, "id"]
    if name in schema and not schema[name].is_nested()
]
controls = st.columns([3, 2, 2])
sort_by = controls[0].selectbox(
    "Sort by", ["(file order)", *sortable], key=f"records:sort:{run.path}", persist_state=ui.PERSIST
)
order = controls[1].segmented_control(
    "Order",
    ["ascending", "descending"],
    default="ascending",
    key=f"records:order:{run.path}",
    persist_state=ui.PERSIST,
)
page_size = controls[2].selectbox(
    "Per page", PAGE_SIZES, index=0, key="records:page_size", persist_state=ui.PERSIST
)

st.caption(
    f"**{run.label}** · {matching:,} of {total:,} records"
    + (" match the filters and search" if filters.active else "")
)
if matching == 0:
    st.warning("No record matches the filters." if filters.active else "This run has no records.")
    st.stop()

pages = data.page_count(matching, page_size)
# A new query (run, filters, sort, page size) gets a new pager, which starts at page 1.
signature = f"{run.path}|{filters}|{sort_by}|{order}|{page_size}"
page_number = st.pagination(pages, key=f"records:pager:{signature}") if pages > 1 else 1
shown = data.display_columns(run)
rows = data.page(
    lazy,
    page_number=page_number,
    page_size=page_size,
    sort_by=None if sort_by == "(file order)" else sort_by,
    descending=order == "descending",
    columns=shown,
)
st.dataframe(
    rows,
    hide_index=True,
    column_config={column: st.column_config.NumberColumn(format="%.4f") for column in run.score_columns},
)
first = (page_number - 1) * page_size + 1
st.caption(f"Page {page_number} of {pages:,} · rows {first:,}–{min(page_number * page_size, matching):,}")

if "id" not in schema:
    st.info("This run has no `id` column, so single records cannot be opened.")
    st.stop()

ids = [str(value) for value in rows["id"].to_list()]
st.divider()
chosen = st.selectbox("Open record", ids, key=f"records:open:{signature}:{page_number}")
found = data.record(run, chosen)
if found is None:
    st.stop()

st.header(f"Record {chosen}", anchor=False)
metadata = {name: found[name] for name in run.metadata_columns if found.get(name) is not None}
if metadata:
    st.markdown(" · ".join(f"**{name}** {value}" for name, value in metadata.items()))
text_tab, evidence_tab, raw_tab = st.tabs(["Texts", "Scores and evidence", "Raw"])
with text_tab:
    for name in run.text_columns:
        value = found.get(name)
        if value is None:
            continue
        st.markdown(f"**{name}**")
        if isinstance(value, list):
            st.text("\n".join(f"{index}. {item}" for index, item in enumerate(value, start=1)))
        else:
            st.text(str(value))
with evidence_tab:
    for metric in run.metrics:
        st.subheader(metric.name, anchor=False)
        render_evidence(EvidenceContext(found, run, metric))
with raw_tab:
    st.code(json.dumps(found, indent=2, ensure_ascii=False, default=str), language="json")
