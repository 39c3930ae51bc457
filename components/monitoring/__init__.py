"""GPU monitoring: the DCGM exporter's metrics, a Grafana dashboard and
Prometheus alert rules for the GPU node(s) (docs/monitoring.md)."""
