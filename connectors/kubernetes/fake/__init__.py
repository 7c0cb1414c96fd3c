"""The far side of the wire for Kubernetes: a loopback API server speaking the real protocol (lists, gets,
watches, the tools' writes), for tests, benchmarks and the demo. Never imported by the connector itself."""
