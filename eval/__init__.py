"""Scoring as the MEGC ME-VQA leaderboard does (installed as ``mevqa.eval``)."""
