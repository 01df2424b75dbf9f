"""Print a new personal access token for a Label Studio user, asked of the running server (no browser).

    infra/label-studio/personal_token.py URL EMAIL PASSWORD

It logs in as the user and does what Account & Settings -> Personal Access Token does: revokes the user's existing
token (Label Studio keeps one per user) and creates a new one. The server signs the token it will later verify, so
nothing depends on reading its secret key from the data directory. The token is what LABEL_STUDIO_API_KEY takes (a
JWT refresh token: docflow exchanges it for access tokens). Standard library only: runs on any Python 3."""

from __future__ import annotations

import http.cookiejar
import json
import sys
import urllib.error
import urllib.parse
import urllib.request
from typing import Any


class Session:
    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")
        self.cookies = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.cookies))

    def csrf(self) -> str:
        return next((c.value or "" for c in self.cookies if c.name == "csrftoken"), "")

    def request(self, method: str, path: str, body: bytes | None = None, content_type: str = "") -> bytes:
        headers = {"Referer": f"{self.url}{path}", "X-CSRFToken": self.csrf()}
        if content_type:
            headers["Content-Type"] = content_type
        request = urllib.request.Request(f"{self.url}{path}", data=body, method=method, headers=headers)
        with self.opener.open(request, timeout=60) as response:
            return bytes(response.read())

    def api(self, method: str, path: str, payload: dict[str, Any] | None = None) -> Any:
        body = json.dumps(payload).encode() if payload is not None else None
        answer = self.request(method, path, body, "application/json")
        return json.loads(answer) if answer else None

    def login(self, email: str, password: str) -> None:
        self.request("GET", "/user/login/")  # sets the CSRF cookie
        form = urllib.parse.urlencode({"email": email, "password": password, "csrfmiddlewaretoken": self.csrf()})
        self.request("POST", "/user/login/", form.encode(), "application/x-www-form-urlencoded")
        if not any(c.name == "sessionid" for c in self.cookies):
            sys.exit(f"Label Studio at {self.url} refused the login of {email!r} (wrong email or password?)")


def new_token(url: str, email: str, password: str) -> str:
    session = Session(url)
    session.login(email, password)
    for existing in session.api("GET", "/api/token/"):  # truncated tokens: enough to revoke them
        session.api("POST", "/api/token/blacklist/", {"refresh": existing["token"]})
    return str(session.api("POST", "/api/token/", {})["token"])


def main() -> None:
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    try:
        print(new_token(*sys.argv[1:]))
    except (urllib.error.URLError, OSError) as e:
        sys.exit(f"cannot get a token from Label Studio at {sys.argv[1]}: {e}")


if __name__ == "__main__":
    main()
