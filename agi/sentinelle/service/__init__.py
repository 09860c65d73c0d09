"""The long-running processes (`serve`, `listen`) and their metrics."""
