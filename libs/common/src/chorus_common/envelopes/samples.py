"""A valid, small payload for every message type: for tests, docs and the schema examples."""

from __future__ import annotations

from typing import Any

from chorus_common.envelopes._types import MessageType as T

__all__ = ["SAMPLE_PAYLOADS"]

ADDRESS = "ucxl://gpt4:architect@chorus:v2-migration/*^/decisions/x.json"

SAMPLE_PAYLOADS: dict[T, dict[str, Any]] = {
    T.TASK_ANNOUNCEMENT: {"task_id": "t-1", "repository": "chorus", "title": "Add gateway"},
    T.TASK_CLAIM: {"task_id": "t-1", "repository": "chorus", "agent": "agent-1"},
    T.TASK_PROGRESS: {"task_id": "t-1", "agent": "agent-1", "progress": 0.5},
    T.TASK_COMPLETE: {"task_id": "t-1", "agent": "agent-1", "summary": "done"},
    T.CAPABILITY_BROADCAST: {"agent": "agent-1", "capabilities": ["python", "nats"]},
    T.AVAILABILITY_BROADCAST: {"agent": "agent-1", "status": "ready", "max_tasks": 2},
    T.META_DISCUSSION: {"content": "Should the API change first?", "kind": "question"},
    T.TASK_HELP_REQUEST: {"task_id": "t-1", "agent": "agent-1", "problem": "tests hang"},
    T.TASK_HELP_RESPONSE: {"task_id": "t-1", "request_id": "r-1", "helper": "agent-2"},
    T.COORDINATION_REQUEST: {"session_id": "s-1", "participants": ["agent-1", "agent-2"]},
    T.COORDINATION_COMPLETE: {"session_id": "s-1", "outcome": "resolved"},
    T.DEPENDENCY_ALERT: {
        "rule": "API_Contract",
        "confidence": 0.8,
        "reason": "API definition and implementation dependency",
        "task_a": "api:t-1",
        "task_b": "web:t-7",
    },
    T.ESCALATION_TRIGGER: {"thread": "s-1", "reason": "agents disagree", "rounds": 10},
    T.ROLE_ANNOUNCEMENT: {"agent": "agent-1", "role": "backend"},
    T.EXPERTISE_REQUEST: {"request_id": "r-2", "expertise": ["postgres"], "question": "index?"},
    T.EXPERTISE_RESPONSE: {"request_id": "r-2", "expert": "agent-3", "answer": "btree"},
    T.STATUS_UPDATE: {"agent": "agent-1", "status": "working"},
    T.WORK_ALLOCATION: {"task_id": "t-1", "agent": "agent-1", "score": 0.9, "term": 1},
    T.ROLE_COLLABORATION: {"roles": ["backend", "frontend"], "topic": "API shape"},
    T.MENTORSHIP_REQUEST: {"request_id": "r-3", "mentee": "agent-4", "topic": "NATS"},
    T.MENTORSHIP_RESPONSE: {"request_id": "r-3", "mentor": "agent-1"},
    T.PROJECT_UPDATE: {"project": "chorus", "summary": "gateway landed"},
    T.DELIVERABLE_READY: {"deliverable_id": "d-1", "location": "git:chorus@abc123"},
    T.SLURP_EVENT_GENERATED: {"event_id": "e-1", "event_type": "decision", "ucxl_address": ADDRESS},
    T.SLURP_EVENT_ACK: {"event_id": "e-1", "agent": "agent-1"},
    T.SLURP_CONTEXT_UPDATE: {"ucxl_address": ADDRESS, "summary": "new decision"},
    T.CONTEXT_FEEDBACK: {"ucxl_address": ADDRESS, "agent": "agent-1", "helpful": True},
    T.CONTEXT_REQUEST: {"request_id": "r-4", "query": "why NATS?"},
    T.CONTEXT_RESPONSE: {"request_id": "r-4", "addresses": [ADDRESS]},
    T.CONTEXT_USAGE: {"ucxl_address": ADDRESS, "agent": "agent-1"},
    T.CONTEXT_RELEVANCE: {"ucxl_address": ADDRESS, "task_id": "t-1", "relevance": 0.7},
}
