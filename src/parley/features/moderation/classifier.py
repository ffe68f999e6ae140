"""The external classifier interface: a message in, a score out.

Any service that scores text can plug in behind `Classifier`. `HttpClassifier` is the one
Parley ships: it POSTs

    {"text": "...", "conversation_id": 7, "conversation_kind": "group", "sender_id": 3,
     "attachments": [{"file_name": "a.png", "content_type": "image/png", "size": 1234}]}

to `PARLEY_MODERATION_CLASSIFIER_URL` and expects `{"score": 0.0-1.0, "labels": [...]}`
(labels optional). A `classifier` rule turns the score into a verdict with its `hold_at` and
`reject_at` thresholds; a failure or a timeout is the rule's `on_error`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Protocol

import httpx

from parley.core.models import AttachmentRef


@dataclass(frozen=True, slots=True)
class ClassifierRequest:
    text: str
    conversation_id: int
    conversation_kind: str
    sender_id: int
    attachments: list[AttachmentRef] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Classification:
    score: float
    labels: list[str] = field(default_factory=list)


class ClassifierFailed(Exception):
    """The classifier did not answer usably (down, slow, or a malformed answer)."""


class Classifier(Protocol):
    async def classify(self, request: ClassifierRequest) -> Classification: ...

    async def close(self) -> None: ...


class HttpClassifier:
    def __init__(self, url: str, *, token: str = "", timeout: float = 2.0) -> None:
        self.url = url
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.AsyncClient(timeout=timeout, headers=headers)

    async def classify(self, request: ClassifierRequest) -> Classification:
        payload = {
            "text": request.text,
            "conversation_id": request.conversation_id,
            "conversation_kind": request.conversation_kind,
            "sender_id": request.sender_id,
            "attachments": [
                {k: v for k, v in asdict(ref).items() if k != "id"} for ref in request.attachments
            ],
        }
        try:
            response = await self._http.post(self.url, json=payload)
            response.raise_for_status()
            answer = response.json()
        except httpx.HTTPStatusError as exc:
            raise ClassifierFailed(f"HTTP {exc.response.status_code}") from None
        except (httpx.HTTPError, ValueError) as exc:
            # The type only: httpx's messages may carry the URL, and a URL may carry a secret.
            raise ClassifierFailed(type(exc).__name__) from None
        score = answer.get("score") if isinstance(answer, dict) else None
        if (
            isinstance(score, bool)
            or not isinstance(score, int | float)
            or not math.isfinite(score)
        ):
            raise ClassifierFailed("the classifier's answer has no numeric `score`")
        labels = answer.get("labels") or []
        if not isinstance(labels, list):
            labels = []
        return Classification(
            score=min(1.0, max(0.0, float(score))), labels=[str(x)[:50] for x in labels[:20]]
        )

    async def close(self) -> None:
        await self._http.aclose()
