"""Team reports: the period's KPIs, scorecard, movers, alerts and charts, rendered as Markdown,
HTML, an Excel workbook or PDF (`kpiwatch report`), and sent on a schedule by the worker.

Every number comes from `streams.query.kpi_rows` and `streams.scorecards`: nothing here
computes a KPI.
"""
