"""Fault injection for REST: the next matching requests get a 429 (with `Via`) or any status."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass

from aiohttp import web


@dataclass(eq=False)
class FaultRule:
    method: str
    pattern: re.Pattern[str]
    status: int
    retry_after: float
    remaining: int
    global_: bool
    via: bool
    code: int
    hits: int = 0

    def matches(self, method: str, path: str) -> bool:
        return (
            self.remaining > 0
            and (self.method == "*" or self.method == method)
            and bool(self.pattern.search(path))
        )

    def response(self) -> web.Response:
        headers = {"Content-Type": "application/json"}
        if self.status == 429:
            body = {
                "message": "You are being rate limited.",
                "retry_after": self.retry_after,
                "global": self.global_,
                "code": 0,
            }
            headers["Retry-After"] = str(max(1, math.ceil(self.retry_after)))
            headers["X-RateLimit-Scope"] = "global" if self.global_ else "user"
            if self.global_:
                headers["X-RateLimit-Global"] = "true"
            if self.via:
                # discord.py retries a 429 only when it came through Discord's proxy (Via set).
                headers["Via"] = "1.1 google"
        else:
            body = {"message": f"{self.status}: Emulated failure", "code": self.code}
        return web.Response(status=self.status, body=json.dumps(body).encode(), headers=headers)


class Faults:
    def __init__(self) -> None:
        self.rules: list[FaultRule] = []

    def add(
        self,
        method: str,
        path_regex: str,
        *,
        status: int = 429,
        retry_after: float = 0.05,
        count: int = 1,
        global_: bool = False,
        via: bool = True,
        code: int = 0,
    ) -> FaultRule:
        rule = FaultRule(
            method.upper(),
            re.compile(path_regex),
            status,
            retry_after,
            count,
            global_,
            via,
            code,
        )
        self.rules.append(rule)
        return rule

    def take(self, method: str, path: str) -> FaultRule | None:
        for rule in self.rules:
            if rule.matches(method, path):
                rule.remaining -= 1
                rule.hits += 1
                return rule
        return None
