"""End-to-end tests: `humanline serve` runs as a separate OS process, driven over the network."""
