// The CPUBackend module; see docs/architecture.md.
