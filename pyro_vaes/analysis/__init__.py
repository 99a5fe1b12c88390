"""After training: evaluation, posterior predictive analysis, checks and pictures."""
