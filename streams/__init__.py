"""The wiring of kpiwatch: event contract, KPI aggregation and the two runtimes that drive it."""
