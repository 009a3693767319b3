"""Programs that exercise the whole running stack and report (make chaos,
make failover-drill, make fuzz, make restore-drill): each a `python -m
tests.tools.NAME` with a short form that `make test` runs."""
