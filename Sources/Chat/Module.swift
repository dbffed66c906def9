// The Chat module; see docs/architecture.md.
