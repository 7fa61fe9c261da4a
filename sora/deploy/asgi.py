"""The ASGI interface's types, for the server's two middlewares (the body limit, the metrics): an app is called
with the connection's ``scope`` and two coroutines, one that receives the request's messages and one that sends
the response's."""

from __future__ import annotations

from typing import Any, Awaitable, Callable, MutableMapping

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
