"""humanline's tests: unit (the pure core), integration (real gRPC, port 0), e2e (processes)."""
