"""What the tests share: the running stack (its settings, processes, Patroni),
probes and receivers run as processes of their own."""
