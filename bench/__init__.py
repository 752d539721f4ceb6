"""The opsbot benchmark (`scripts/bench`): starts everything on loopback, prints a table per
section and writes the figures as JSON. Speed is measured here and never asserted in tests."""
