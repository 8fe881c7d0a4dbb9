"""Key bindings and event-ID presets (TOML), shipped with the package."""
