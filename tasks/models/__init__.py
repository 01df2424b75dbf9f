"""Model wrappers: a factory takes a name or path, device and precision; heavy imports happen inside."""
