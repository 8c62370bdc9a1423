"""Launchable training recipes and their YAML configs (installed as ``mevqa.recipes`` so the configs ship)."""
