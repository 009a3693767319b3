"""Keeps Elasticsearch in step with the databases; serves health and metrics."""
