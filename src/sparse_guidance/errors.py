"""One exception type for bad input, so callers (and Snakemake rules) can catch it.

Every message names the offending value and what is allowed instead.
"""


class ConfigError(ValueError):
    """A configuration value, recipe, checkpoint or argument that cannot be used."""
