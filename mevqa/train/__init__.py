"""Training pieces shared by the recipes under ``recipes/``."""
