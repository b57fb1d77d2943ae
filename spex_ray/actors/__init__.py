"""Ray actors: thin wrappers around the Ray-free engines and query searches."""
