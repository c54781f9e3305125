"""doit graph wiring: one module per stage, plus keys, typed variables and the CLI plugins."""
