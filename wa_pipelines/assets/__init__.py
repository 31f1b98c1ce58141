"""Assets: the app tables (lineage) and the dashboards computed from them."""
