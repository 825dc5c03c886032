"""Stimulus sets and perturbations."""
