"""Orchestration: flows (which tasks run, in what batches, with what retries), the CLI, deployment entry points."""
