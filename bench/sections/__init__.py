"""One module per bench section; each has `run(ctx) -> Section`."""
