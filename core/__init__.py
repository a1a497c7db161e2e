"""Shared configuration for every package of the project."""
