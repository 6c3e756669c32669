"""Where alerts go: one module per channel, each behind the small `Sink` protocol."""
