"""The remo API server: gRPC over mutual TLS 1.3 in front of :class:`remo.worker.JobManager`."""
