"""Connections and export definitions, and the run engine that delivers them."""
