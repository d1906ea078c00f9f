"""Door outputs: webhook, MQTT and local command, fed each decision (no biometric data)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
from typing import Any, Protocol

import httpx

from app.door.config import CommandOutput, MqttOutput, Output, WebhookOutput

log = logging.getLogger(__name__)


def public_payload(door_id: int, answer: dict[str, Any], at: str) -> dict[str, Any]:
    """What outputs see of an answer: the decision, never distances, liveness cues or images."""
    person = answer.get("person")
    return {
        "door_id": door_id,
        "event_id": answer.get("event_id"),
        "decision": answer.get("decision"),
        "reason": answer.get("reason"),
        "person": {"id": person["id"], "name": person["name"]} if isinstance(person, dict) else None,
        "hint": answer.get("hint"),
        "at": at,
    }


class DoorOutput(Protocol):
    def deliver(self, payload: dict[str, Any]) -> None: ...

    def close(self) -> None: ...


class Webhook:
    def __init__(self, spec: WebhookOutput) -> None:
        self.spec = spec

    def deliver(self, payload: dict[str, Any]) -> None:
        if self.spec.on == "granted" and payload["decision"] != "granted":
            return
        try:
            httpx.post(self.spec.url, json=payload, timeout=self.spec.timeout_s).raise_for_status()
        except httpx.HTTPError as exc:
            log.warning("webhook %s failed: %s", self.spec.url, exc)

    def close(self) -> None:
        pass


class Mqtt:
    """Publishes <prefix>/doors/<id>/unlock on a grant and <prefix>/events for every decision."""

    def __init__(self, spec: MqttOutput, door_id: int) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self.spec = spec
        self.door_id = door_id
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"facegate-door-{door_id}")
        if spec.username is not None:
            password = spec.password_file.read_text().strip() if spec.password_file else None
            self._client.username_pw_set(spec.username, password)
        self._client.connect_async(spec.host, spec.port)
        self._client.loop_start()  # reconnects by itself; publishes queue until connected

    def deliver(self, payload: dict[str, Any]) -> None:
        body = json.dumps(payload)
        prefix = self.spec.topic_prefix
        topics = [f"{prefix}/events"]
        if payload["decision"] == "granted":
            topics.insert(0, f"{prefix}/doors/{self.door_id}/unlock")
        for topic in topics:
            info = self._client.publish(topic, body, qos=self.spec.qos)
            try:
                info.wait_for_publish(timeout=5)
            except (RuntimeError, ValueError) as exc:
                log.warning("mqtt publish to %s failed: %s", topic, exc)

    def close(self) -> None:
        self._client.loop_stop()
        self._client.disconnect()


class Command:
    """Runs argv without a shell, the decision in FACEGATE_DECISION, _REASON, _PERSON_ID, _PERSON_NAME,
    _EVENT_ID, _DOOR_ID and the whole payload in FACEGATE_PAYLOAD."""

    def __init__(self, spec: CommandOutput) -> None:
        self.spec = spec

    def deliver(self, payload: dict[str, Any]) -> None:
        if self.spec.on == "granted" and payload["decision"] != "granted":
            return
        person = payload["person"] or {}
        env = {
            **os.environ,
            "FACEGATE_DECISION": str(payload["decision"]),
            "FACEGATE_REASON": str(payload["reason"]),
            "FACEGATE_PERSON_ID": str(person.get("id", "")),
            "FACEGATE_PERSON_NAME": str(person.get("name", "")),
            "FACEGATE_EVENT_ID": str(payload["event_id"]),
            "FACEGATE_DOOR_ID": str(payload["door_id"]),
            "FACEGATE_PAYLOAD": json.dumps(payload),
        }
        env.pop("FACEGATE_DOOR_KEY", None)  # the relay script has no need for the door's secret
        try:
            done = subprocess.run(self.spec.argv, env=env, timeout=self.spec.timeout_s, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            log.warning("command %s failed: %s", self.spec.argv[0], exc)
            return
        if done.returncode != 0:
            log.warning("command %s exited with %d", self.spec.argv[0], done.returncode)

    def close(self) -> None:
        pass


def make_outputs(specs: list[Output], door_id: int) -> list[DoorOutput]:
    made: list[DoorOutput] = []
    for spec in specs:
        if isinstance(spec, WebhookOutput):
            made.append(Webhook(spec))
        elif isinstance(spec, MqttOutput):
            made.append(Mqtt(spec, door_id))
        else:
            made.append(Command(spec))
    return made
