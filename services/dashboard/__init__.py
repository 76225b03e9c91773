"""dashboard: a Streamlit + Plotly page that reads the results database (read-only)."""
