"""sentinelle's tests: one file per feature; shared helpers in `tests.helpers`."""
