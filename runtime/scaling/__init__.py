"""Scaling: a pure decision (`decide`) and the loop that applies it (`Autoscaler`)."""
