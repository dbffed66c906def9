// The Generation module; see docs/architecture.md.
