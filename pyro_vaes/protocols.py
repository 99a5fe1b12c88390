"""What the pieces promise each other."""
