"""Shared test code: configs (tiny settings, composition) and audio data on disk."""
