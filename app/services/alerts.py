"""Alerts (a streak of spoof / unknown-person bursts at one door) and publishing them.

- The streak is judged in SQL over the door's latest events, so bursts spread over several
  replicas count together; the door row's lock (PostgreSQL) makes replicas judge one door's
  streak one after another. An alert is raised when the door's last FACEGATE_ALERT_STREAK events
  all qualify and span at most FACEGATE_ALERT_STREAK_WINDOW_S, unless the door's previous alert
  reported one of them: a continuing attack raises one alert per FACEGATE_ALERT_STREAK bursts.
- Alerts are stored (``alerts``; GET /v1/alerts) and published, where configured, to MQTT
  (<prefix>/alerts) and a webhook; access events optionally to <prefix>/events. Publishing runs on
  one background thread behind a bounded queue: it never blocks or fails a request. When the
  queue is full, new messages are dropped and counted (``Publisher.dropped``, logged).
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import uuid
from collections import Counter
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

import httpx
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy.orm import Session, sessionmaker

from app.settings import Settings
from app.store import security
from app.store.models import Alert, utcnow

log = logging.getLogger(__name__)

# The denials a streak is made of: a presentation attack, or a face nobody enrolled has (in claim
# mode, a face that is not the claimed person's).
STREAK_REASONS = frozenset({"spoof", "unknown_person", "not_claimed_person"})
STREAK_KIND = "burst_streak"
WEBHOOK_TIMEOUT_S = 5.0
MQTT_QOS = 1

Channel = Literal["alert", "event"]


@dataclass(frozen=True)
class EventSummary:
    """What may leave the service about an access event: no distances, scores, cues or images."""

    event_id: int
    door_id: int
    decision: str
    reason: str
    person_id: int | None
    person_name: str | None
    mode: str
    created_at: str


def alert_payload(alert: Alert) -> dict[str, Any]:
    return {
        "alert_id": alert.id,
        "kind": alert.kind,
        "door_id": alert.door_id,
        "created_at": alert.created_at.isoformat(),
        "details": alert.details,
    }


def event_payload(event: EventSummary) -> dict[str, Any]:
    out = asdict(event)
    name = out.pop("person_name")
    person_id = out.pop("person_id")
    out["person"] = None if person_id is None else {"id": person_id, "name": name}
    return out


class Publisher:
    """One thread delivering queued messages to MQTT and/or a webhook; ``submit`` never blocks."""

    def __init__(self, settings: Settings) -> None:
        self.mqtt_url = settings.mqtt_url.get_secret_value() if settings.mqtt_url else None
        self.webhook_url = (
            settings.alert_webhook_url.get_secret_value() if settings.alert_webhook_url else None
        )
        self.prefix = settings.mqtt_topic_prefix
        self.publish_events = settings.mqtt_publish_events and self.mqtt_url is not None
        self.dropped = 0
        self.delivered = 0
        self._queue: queue.Queue[tuple[Channel, dict[str, Any]] | None] = queue.Queue(
            settings.publish_queue_max
        )
        self._mqtt: mqtt.Client | None = None
        self._last: mqtt.MQTTMessageInfo | None = None
        self._thread: threading.Thread | None = None
        if self.mqtt_url is not None or self.webhook_url is not None:
            self._thread = threading.Thread(target=self._run, name="facegate-publisher", daemon=True)
            self._thread.start()

    @property
    def enabled(self) -> bool:
        return self._thread is not None

    def submit(self, channel: Channel, payload: dict[str, Any]) -> bool:
        if self._thread is None or (channel == "event" and not self.publish_events):
            return False
        try:
            self._queue.put_nowait((channel, payload))
        except queue.Full:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 100 == 0:
                log.warning("publish queue full: %d messages dropped so far", self.dropped)
            return False
        return True

    def _connect_mqtt(self, url: str) -> mqtt.Client:
        parts = urlsplit(url)
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"facegate-{uuid.uuid4().hex[:12]}")
        if parts.username:
            client.username_pw_set(unquote(parts.username), unquote(parts.password or "") or None)
        if parts.scheme == "mqtts":
            client.tls_set()
        client.max_queued_messages_set(self._queue.maxsize)
        client.reconnect_delay_set(1, 30)
        # Queued QoS 1 messages wait in paho until the broker is reachable; the loop reconnects.
        client.connect_async(
            parts.hostname or "127.0.0.1", parts.port or (8883 if parts.scheme == "mqtts" else 1883)
        )
        client.loop_start()
        log.info("publishing to MQTT broker %s:%s", parts.hostname, parts.port or 1883)  # never the password
        return client

    def _run(self) -> None:
        if self.mqtt_url is not None:
            try:
                self._mqtt = self._connect_mqtt(self.mqtt_url)
            except (OSError, ValueError) as exc:  # TLS setup, a bad port: the webhook still goes
                log.error("MQTT publishing is off: %s", type(exc).__name__)
        with httpx.Client(timeout=WEBHOOK_TIMEOUT_S) as http:
            while True:
                item = self._queue.get()
                if item is None:
                    break
                self._deliver(http, *item)

    def _deliver(self, http: httpx.Client, channel: Channel, payload: dict[str, Any]) -> None:
        body = json.dumps(payload, separators=(",", ":"))
        if self._mqtt is not None:
            topic = f"{self.prefix}/alerts" if channel == "alert" else f"{self.prefix}/events"
            try:
                self._last = self._mqtt.publish(topic, body, qos=MQTT_QOS)
            except (OSError, ValueError, RuntimeError) as exc:  # the thread must outlive one message
                log.warning("MQTT publish to %s failed: %s", topic, type(exc).__name__)
        if channel == "alert" and self.webhook_url is not None:
            try:
                r = http.post(self.webhook_url, content=body, headers={"Content-Type": "application/json"})
                if r.status_code >= 400:
                    log.warning("alert webhook answered %d", r.status_code)
            except httpx.HTTPError as exc:
                log.warning("alert webhook failed: %s", type(exc).__name__)  # the URL may hold a token
        self.delivered += 1

    def close(self, timeout_s: float = 5.0) -> None:
        """Deliver what is queued (within ``timeout_s``), then stop."""
        if self._thread is None:
            return
        try:
            self._queue.put(None, timeout=timeout_s)
        except queue.Full:
            log.warning("publish queue still full at shutdown: undelivered messages are dropped")
        self._thread.join(timeout_s)
        if self._mqtt is not None:
            if self._last is not None and self._mqtt.is_connected():
                try:
                    self._last.wait_for_publish(timeout_s)
                except (RuntimeError, ValueError) as exc:
                    log.warning("MQTT messages may be lost at shutdown: %s", exc)
            self._mqtt.loop_stop()
            self._mqtt.disconnect()


class AlertService:
    def __init__(
        self, sessions: sessionmaker[Session], settings: Settings, publisher: Publisher | None = None
    ) -> None:
        self.sessions = sessions
        self.streak = settings.alert_streak
        self.window = timedelta(seconds=settings.alert_streak_window_s)
        self.publisher = publisher or Publisher(settings)

    def after_event(self, event: EventSummary) -> Alert | None:
        """Publish the event (when configured) and raise an alert when it completes a streak.
        Blocking (SQL) for qualifying denials only; call it off the event loop."""
        self.publisher.submit("event", event_payload(event))
        if event.decision != "denied" or event.reason not in STREAK_REASONS:
            return None
        with self.sessions() as session:
            alert = self._judge(session, event.door_id)
            session.commit()
        if alert is not None:
            log.warning(
                "alert: %d spoof or unknown-person bursts in a row at door %d",
                self.streak,
                event.door_id,
                extra={"alert_id": alert.id, "door_id": alert.door_id},
            )
            self.publisher.submit("alert", alert_payload(alert))
        return alert

    def _judge(self, session: Session, door_id: int) -> Alert | None:
        if not security.lock_door(session, door_id):
            return None
        events = security.latest_events(session, door_id, self.streak)
        if len(events) < self.streak or any(
            e.decision != "denied" or e.reason not in STREAK_REASONS for e in events
        ):
            return None
        first, last = events[-1].created_at, events[0].created_at
        if last - first > self.window:
            return None
        previous = security.latest_alert(session, door_id, STREAK_KIND)
        if previous is not None and set(previous.details.get("event_ids", ())) & {e.id for e in events}:
            return None  # the streak that alert reported goes on: the next alert comes after N more
        details: dict[str, Any] = {
            "streak": self.streak,
            "window_s": self.window.total_seconds(),
            "reasons": dict(Counter(e.reason for e in events)),
            "event_ids": [e.id for e in reversed(events)],
            "first_event_at": _iso(first),
            "last_event_at": _iso(last),
        }
        return security.add_alert(session, STREAK_KIND, door_id, details, utcnow())

    def close(self) -> None:
        self.publisher.close()


def _iso(at: datetime) -> str:
    return at.isoformat()
