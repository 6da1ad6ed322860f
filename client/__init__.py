"""The fal.ai queue client and the schema of the edit endpoint. Never imports discord.

- `client.fal`: `FalClient`, `RequestHandle` (submit, status, watch, result, cancel, upload,
  download, handle_for).
- `client.schema`: pydantic models of the endpoint's input and output, queue statuses and
  fal's error bodies.
- `client.errors`: the typed errors, each safe to show a member.
- `client.pricing`: the cost estimate of a request.
- `client.retry`, `client.watch`: the retry and polling policies (`RetryPolicy`, `PollPolicy`).
- `client.webhooks`: `WebhookVerifier`, which proves a webhook delivery came from fal before it
  is parsed into a `WebhookDelivery` (docs/fal-webhooks.md).
"""
