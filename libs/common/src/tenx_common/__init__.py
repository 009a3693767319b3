"""What every Tenx service shares: settings, logging, telemetry, metrics, errors, health."""
