"""REST routes, one module per noun, all under /api."""
