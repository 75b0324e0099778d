"""Local stand-ins for the services the sample workflows call.

Each behaves like the real thing (a payment gateway, a warehouse, a reporting
API, an object store, a classifier, a skills index, a user directory, a
language model) but runs in-process, without a network, and deterministically:
the same inputs give the same outputs, and the one transient failure, which
makes retries visible, depends on the step's attempt number, never on chance.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from wfcli import NonRetryableError

__all__ = [
    "CATALOGUE",
    "DECLINED_CARD",
    "USERS",
    "CardDeclinedError",
    "GatewayUnavailableError",
    "ReportBucket",
    "UserNotFoundError",
    "charge_card",
    "classify_brief",
    "fetch_report_data",
    "generate_analysis",
    "load_user",
    "refund_payment",
    "search_skills",
    "ship_order",
]


def _token(prefix: str, *parts: object) -> str:
    """A stable identifier derived from ``parts`` (what a real service would store)."""
    digest = hashlib.sha256("|".join(map(str, (prefix, *parts))).encode()).hexdigest()
    return f"{prefix}_{digest[:12]}"


# --- payments and shipping ---------------------------------------------------------

CATALOGUE: Mapping[str, int] = {"book": 1250, "mug": 899, "poster": 1500, "sticker": 199}
"""Unit prices in cents by SKU."""

DECLINED_CARD = "0002"
"""Last four digits of the card the gateway always declines."""


class GatewayUnavailableError(ConnectionError):
    """The payment gateway did not answer; the same request may be retried."""


class CardDeclinedError(NonRetryableError):
    """The card issuer refused the charge; retrying cannot help."""


def charge_card(
    card: str, amount_cents: int, idempotency_key: str, *, attempt: int
) -> dict[str, Any]:
    """Charge ``amount_cents`` to the card ending in ``card``.

    Like a real gateway it dedupes by ``idempotency_key`` (the same key gives
    the same charge ID). It times out on a step's first ``attempt`` so the
    retry policy shows, and declines :data:`DECLINED_CARD` for good.
    """
    if card == DECLINED_CARD:
        raise CardDeclinedError(f"card ending {card} was declined by the issuer")
    if attempt == 1:
        raise GatewayUnavailableError("payment gateway timed out (HTTP 503)")
    return {
        "charge_id": _token("ch", idempotency_key),
        "amount_cents": amount_cents,
        "card": card,
    }


def refund_payment(order_id: str, amount_cents: int, idempotency_key: str) -> dict[str, Any]:
    """Refund ``amount_cents`` of ``order_id``'s charge; deduped by ``idempotency_key``."""
    return {
        "refund_id": _token("re", idempotency_key),
        "order_id": order_id,
        "amount_cents": amount_cents,
    }


def ship_order(order_id: str, lines: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Hand the order to the warehouse; returns the parcel's tracking number."""
    parcels = sum(int(line["qty"]) for line in lines)
    return {"tracking_number": _token("trk", order_id), "parcels": parcels}


# --- reports -----------------------------------------------------------------------


def fetch_report_data(report_id: str) -> dict[str, Any]:
    """What the reporting API returns for ``report_id``: three line items.

    The amounts derive from the ID, so every fetch of one report agrees.
    """
    digest = hashlib.sha256(report_id.encode()).digest()
    items = [
        {"name": f"line-{index + 1}", "amount_cents": 100 + digest[index] * 10}
        for index in range(3)
    ]
    return {"report_id": report_id, "items": items}


class ReportBucket:
    """An object store kept in a local folder, one JSON file per key.

    ``put`` writes to a temporary name and renames it into place, so ``exists``
    never sees half an object: a check-before-write is safe after a crash.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def path(self, key: str) -> Path:
        if not key or key.startswith(".") or "/" in key or "\\" in key:
            raise ValueError(f"bucket key {key!r} must be a plain file name")
        return self.folder / key

    def exists(self, key: str) -> bool:
        return self.path(key).exists()

    def put(self, key: str, document: object) -> Path:
        target = self.path(key)
        self.folder.mkdir(parents=True, exist_ok=True)
        temporary = self.folder / f".{key}.{uuid.uuid4().hex}.tmp"
        temporary.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n", "utf-8")
        os.replace(temporary, target)
        return target


# --- brief analysis ----------------------------------------------------------------

_DOMAIN_KEYWORDS: Mapping[str, tuple[str, ...]] = {
    "branding": ("logo", "brand", "identity", "palette"),
    "engineering": ("api", "app", "backend", "database", "integration"),
    "marketing": ("campaign", "ads", "seo", "launch", "newsletter"),
}
_SKILLS: Mapping[str, tuple[str, ...]] = {
    "branding": ("logo design", "typography", "brand guidelines", "illustration"),
    "engineering": ("python", "api design", "postgres", "testing"),
    "marketing": ("copywriting", "seo", "paid social", "email marketing"),
    "general": ("project management", "research", "writing"),
}

USERS: Mapping[str, Mapping[str, str]] = {
    "u-1": {"name": "Ada Lovelace", "email": "ada@example.com", "plan": "pro"},
    "u-2": {"name": "Grace Hopper", "email": "grace@example.com", "plan": "free"},
}
"""The user directory, by user ID."""


class UserNotFoundError(NonRetryableError):
    """The user directory has no such user."""


def _words(text: str) -> list[str]:
    return "".join(c.lower() if c.isalnum() else " " for c in text).split()


def classify_brief(text: str) -> dict[str, Any]:
    """The brief's domain (``branding``, ``engineering``, ``marketing`` or
    ``general``) and the keywords that decided it, as a classifier model would say."""
    words = set(_words(text))
    scores = {
        domain: sorted(words.intersection(keywords))
        for domain, keywords in _DOMAIN_KEYWORDS.items()
    }
    domain = max(scores, key=lambda name: len(scores[name]))
    if not scores[domain]:
        return {"domain": "general", "keywords": []}
    return {"domain": domain, "keywords": scores[domain]}


def search_skills(text: str, domain: str, *, limit: int = 3) -> list[str]:
    """The skills most relevant to the brief: those it mentions first, then the domain's."""
    words = set(_words(text))
    candidates = _SKILLS.get(domain, _SKILLS["general"])
    ranked = sorted(candidates, key=lambda skill: not words.intersection(skill.split()))
    return ranked[:limit]


def load_user(user_id: str) -> dict[str, str]:
    """The user's profile from the directory."""
    try:
        return {"user_id": user_id, **USERS[user_id]}
    except KeyError:
        raise UserNotFoundError(f"no user {user_id!r} in the directory") from None


def generate_analysis(
    brief_text: str,
    classification: Mapping[str, Any],
    skills: Sequence[str],
    user: Mapping[str, Any],
) -> dict[str, Any]:
    """What a language model would write about the brief, as structured output."""
    words = len(_words(brief_text))
    effort_days = max(1, round(words / 10)) * len(skills)
    return {
        "summary": (
            f"A {classification['domain']} brief of {words} words for {user['name']}, "
            f"needing {', '.join(skills)}."
        ),
        "domain": classification["domain"],
        "skills": list(skills),
        "estimate_days": effort_days,
        "priority": "high" if user.get("plan") == "pro" else "normal",
    }
