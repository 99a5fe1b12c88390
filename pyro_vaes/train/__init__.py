"""Training: the loop (:func:`fit`), callbacks and checkpoints."""
