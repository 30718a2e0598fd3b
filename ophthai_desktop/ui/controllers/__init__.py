"""Controllers: connect views to core services (through the task runner) and to the
event bridge."""
