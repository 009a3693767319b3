"""What every Tenx service shares, by concern:

- ``settings``: the typed settings every service composes its own from;
- ``events``: the domain events, one module per topic;
- ``observability``: logs, metrics, traces;
- ``web``: problem+json errors, outages, health, the request middleware;
- ``security``: tokens, the bearer dependencies, rate limits;
- ``data``: PostgreSQL engines and the session router, the unit of work and
  its outbox, migrations, Redis, Elasticsearch;
- ``messaging``: Kafka topics, the consumer, the outbox relay;
- ``loops`` and ``work``: background loops, and work leased from PostgreSQL
  (sagas);
- ``runtime``: a service's app, worker, command line and clients.

Build and operations tools are in ``tenx_tools`` (libs/tools), which no image
ships.
"""
