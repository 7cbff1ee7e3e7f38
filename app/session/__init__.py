"""The live session (capture → worker → GUI events) and its background jobs; no Qt."""
