"""Demo actors for the shipped config (config/actord.toml): echo, ticker and counter.

Each module's ``main`` is a process entry point (SPEC section 2); ``python_path`` in the config
puts this package's parent directory on the workers' ``sys.path``.
"""
