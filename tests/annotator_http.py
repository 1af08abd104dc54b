"""A person in Label Studio as plain HTTP: sign up by invite link, then label through the queue with one's own token.

No Flywheel code on this side: what a real annotator's browser does, so tests can check what Flywheel makes of it.
"""

from __future__ import annotations

import httpx

RESULT = [{"from_name": "label", "to_name": "image", "type": "choices", "value": {"choices": ["cat"]}}]


def sign_up(invite_url: str, email: str, password: str) -> str:
    """What a person does with the invite link, as plain HTTP: the signup form, then their own API token."""
    with httpx.Client(follow_redirects=False, timeout=60) as web:
        web.get(invite_url)
        response = web.post(
            invite_url,
            data={"email": email, "password": password, "csrfmiddlewaretoken": web.cookies["csrftoken"]},
            headers={"Referer": invite_url},
        )
        assert response.status_code == 302, response.text[:300]  # a redirect into the app: signed up and logged in
        base = invite_url.split("/user/")[0]
        token = web.get(f"{base}/api/current-user/token").json()["token"]
    return token


def label_until_empty(url: str, token: str, project_id: int, limit: int = 100, stop_early: bool = False) -> list[int]:
    """An annotator working through the queue (GET /api/projects/<id>/next) until it is empty (or, with
    `stop_early`, after `limit` tasks); the task ids in the order they were served. No Flywheel code: only
    the user's token and the REST API."""
    served: list[int] = []
    with httpx.Client(base_url=url, headers={"Authorization": f"Token {token}"}, timeout=60) as me:
        for _ in range(limit):
            response = me.get(f"/api/projects/{project_id}/next")
            if response.status_code == 404:
                return served
            response.raise_for_status()
            task_id = int(response.json()["id"])
            served.append(task_id)
            saved = me.post(f"/api/tasks/{task_id}/annotations/", json={"result": RESULT, "lead_time": 2.0})
            assert saved.status_code == 201, saved.text[:300]
    if stop_early:
        return served
    raise AssertionError(f"the queue was still serving after {limit} tasks: {served[-5:]}")
