"""Built-in runbooks shipped with opsbot (YAML files beside this module)."""
