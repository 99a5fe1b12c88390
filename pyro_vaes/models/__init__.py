"""The model families: each a Pyro model/guide pair in an ``nn.Module``."""
