"""Tests of operations: backup, restore, key rotation, retention, metrics, shutdown."""
