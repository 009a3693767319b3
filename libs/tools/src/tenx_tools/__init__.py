"""Tenx's build and operations tools, run from the repository with ``python -m``:
``slo`` (the SLO rules), ``event_schemas`` (the events' JSON Schemas and their
compatibility check), ``smoke`` (a smoke test of a running platform) and
``traces`` (a trace from Jaeger as a tree). No service imports them, and no
image ships them."""
