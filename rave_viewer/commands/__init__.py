"""Floor 6: one module per ``rave`` sub-command (HELP, add_arguments, run)."""
