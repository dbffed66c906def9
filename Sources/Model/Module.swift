// The Model module; see docs/architecture.md.
