"""The catalogue of named variants."""
