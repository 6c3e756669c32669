"""The pure core of kpiwatch: rule schema, evaluation, alert lifecycle and alert records.

Nothing in this package imports Kafka, Redis or HTTP libraries; both runtimes call it.
"""
