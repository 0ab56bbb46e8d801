"""Feature definitions, the vectorised engine, validation and statistics."""
