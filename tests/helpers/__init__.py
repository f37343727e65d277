"""Shared test code: configs (tiny settings, composition), audio data on disk, and child
processes that file permissions bind (tests may run as root)."""
