"""The fal.ai queue client and the schema of the edit endpoint. Never imports discord."""
