"""The domain: edit requests, pricing, admission, quotas and the job lifecycle.

Never imports discord: it talks to Discord through the publisher interface.
"""
