"""Feeds of marketplace data turned into kpiwatch events: files, a simulator, and (later) APIs."""
