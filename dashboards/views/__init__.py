"""The dashboard's pages: each file is one Streamlit page script (see ``dashboards/app.py``)."""
