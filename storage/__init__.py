"""SQLite storage: migrations, LoRA registry, quotas, jobs, settings."""
