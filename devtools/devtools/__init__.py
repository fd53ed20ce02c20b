"""Development tools for streamvault: the test stream and small helpers for tests,
run-local and benchmarks. Installed into the development virtualenv only, never
into a service image (so nothing here may be imported by a service)."""
