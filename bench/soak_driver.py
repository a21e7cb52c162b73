#!/usr/bin/env python3
"""The soak's browser-like traffic (bench/soak.sh), standard library only.

  soak_driver.py login GATEWAY          print a session cookie value (alice)
  soak_driver.py flows GATEWAY SECONDS INTERVAL

`flows` repeats, until SECONDS have passed: a login at the IdP, a page, a
logout in the next mode (redirect, silent, popup, local; through the IdP's
confirmation, which also sends the gateway a back-channel logout token),
and a handful of anonymous junk requests (double-encoded paths, anonymous
logouts with an 8 KB return_to, forged back-channel posts, bad WebSocket
handshakes). Every INTERVAL seconds it prints one JSON line:
{"t": seconds, "cycles": n, "requests": n, "errors": n, "last_error": "..."}
where an error is a connection failure, a 5xx, or an answer the flow does
not expect.
"""

import http.client
import json
import re
import sys
import time
import urllib.parse

MODES = ["redirect", "silent", "popup", "local"]


class Browser:
    """Cookies per host:port, no automatic redirects."""

    def __init__(self):
        self.jar = {}
        self.requests = 0

    def request(self, method, url, body=None, headers=None):
        u = urllib.parse.urlsplit(url)
        hostport = u.netloc
        conn = http.client.HTTPConnection(hostport, timeout=15)
        h = {"Accept": "text/html"}
        h.update(headers or {})
        cookies = self.jar.get(hostport, {})
        if cookies:
            h["Cookie"] = "; ".join(f"{k}={v}" for k, v in cookies.items())
        if body is not None and "Content-Type" not in h:
            h["Content-Type"] = "application/x-www-form-urlencoded"
        path = u.path or "/"
        if u.query:
            path += "?" + u.query
        self.requests += 1
        try:
            conn.request(method, path, body=body, headers=h)
            resp = conn.getresponse()
            data = resp.read().decode("utf-8", "replace")
        finally:
            conn.close()
        for value in resp.headers.get_all("Set-Cookie") or []:
            pair = value.split(";", 1)[0]
            if "=" not in pair:
                continue
            name, val = pair.split("=", 1)
            expired = "max-age=0" in value.lower()
            jar = self.jar.setdefault(hostport, {})
            if expired:
                jar.pop(name.strip(), None)
            else:
                jar[name.strip()] = val
        location = resp.headers.get("Location")
        if location:
            location = urllib.parse.urljoin(url, location)
        return resp.status, location, data

    def follow(self, url, limit=12):
        """GETs and follows redirects; the last (status, url, body)."""
        status, location, body = self.request("GET", url)
        while status in (301, 302, 303, 307, 308) and limit > 0:
            url = location
            status, location, body = self.request("GET", url)
            limit -= 1
        return status, url, body


class Unexpected(Exception):
    pass


def expect(cond, what):
    if not cond:
        raise Unexpected(what)


def form(body, base):
    """The first form's action and hidden fields."""
    m = re.search(r'<form[^>]*action="([^"]*)"', body)
    expect(m, "no form")
    action = urllib.parse.urljoin(base, m.group(1).replace("&amp;", "&"))
    fields = re.findall(r'<input[^>]*type="hidden"[^>]*name="([^"]*)"[^>]*value="([^"]*)"', body)
    return action, fields


def login(gw):
    b = Browser()
    url = f"{gw}/.portcullis/login?return_to=/"
    status, location, body = b.request("GET", url)
    for _ in range(20):
        if status in (301, 302, 303):
            url = location
            status, location, body = b.request("GET", url)
            continue
        if status == 200 and "<form" in body:
            action, fields = form(body, url)
            prompt = dict(fields).get("prompt")
            if prompt == "login":
                fields += [("login", "alice"), ("password", "soak")]
            elif prompt != "consent":
                break
            url = action
            status, location, body = b.request("POST", action, urllib.parse.urlencode(fields))
            continue
        break
    expect(status == 200, f"login end: {status} at {url}")
    expect("portcullis" in b.jar.get(urllib.parse.urlsplit(gw).netloc, {}), "no session cookie")
    return b


def through_idp(b, gw, url):
    """From a URL at the IdP's end-session endpoint to /logout/done's answer."""
    status, here, body = b.follow(url)
    expect(status == 200, f"end-session page: {status}")
    action, fields = form(body, here)
    fields = [(k, v) for k, v in fields if k != "logout"] + [("logout", "yes")]
    status, location, _ = b.request("POST", action, urllib.parse.urlencode(fields))
    expect(status in (302, 303) and location and "/.portcullis/logout/done" in location, f"IdP confirm: {status}")
    status, location, _ = b.request("GET", location)
    expect(status == 303 and location == f"{gw}/", f"/logout/done: {status} {location}")


def cycle(gw, mode):
    b = login(gw)
    status, _, _ = b.request("GET", f"{gw}/")
    expect(status == 200, f"page with a session: {status}")
    same_origin = {"Origin": gw, "Sec-Fetch-Site": "same-origin", "Sec-Fetch-Mode": "navigate"}
    status, location, body = b.request("POST", f"{gw}/logout?mode={mode}", "", same_origin)
    if mode == "local":
        expect(status == 303 and location == f"{gw}/", f"local logout: {status} {location}")
    elif mode == "redirect":
        expect(status == 303, f"redirect logout: {status}")
        through_idp(b, gw, location)
    else:
        expect(status == 200, f"{mode} page: {status}")
        m = re.search(r'<a href="([^"]*fallback=redirect)"', body)
        expect(m, f"{mode} page without its <noscript> link")
        status, location, _ = b.request("GET", m.group(1).replace("&amp;", "&"))
        expect(status == 303, f"/logout/continue: {status}")
        through_idp(b, gw, location)
    status, _, _ = b.request("GET", f"{gw}/")
    expect(status == 302, f"page after logout: {status}")
    return b.requests


def junk(gw):
    """Anonymous requests: each must get its 4xx/3xx, never a 5xx."""
    b = Browser()
    cases = [
        ("GET", "/%2561dmin", None, {}, (400,)),
        ("GET", "/public/..%3B/x", None, {}, (400,)),
        ("POST", "/logout?return_to=/?" + "a" * 8192, "", {"Accept": "*/*"}, (303,)),
        ("POST", "/.portcullis/backchannel-logout", "logout_token=x.y.z", {}, (400, 429)),
        # Anonymous: the session check answers first (302 for a page).
        ("GET", "/ws", None, {"Connection": "Upgrade", "Upgrade": "websocket", "Origin": gw}, (302, 400)),
        ("GET", "/anything?x=1", None, {"Accept": "application/json"}, (401,)),
    ]
    for method, path, body, headers, want in cases:
        status, _, _ = b.request(method, gw + path, body, headers)
        expect(status in want, f"junk {method} {path[:40]}: {status}")
    return b.requests


def flows(gw, seconds, interval):
    start = time.monotonic()
    next_report = interval
    cycles = requests = errors = 0
    last_error = ""
    n = 0
    while time.monotonic() - start < seconds:
        for step in (lambda: cycle(gw, MODES[n % len(MODES)]), lambda: junk(gw)):
            try:
                requests += step()
            except (Unexpected, OSError, http.client.HTTPException) as e:
                errors += 1
                requests += 1
                last_error = str(e)[:200]
        n += 1
        cycles += 1
        t = time.monotonic() - start
        if t >= next_report:
            print(json.dumps({"t": round(t), "cycles": cycles, "requests": requests,
                              "errors": errors, "last_error": last_error}), flush=True)
            next_report += interval
    print(json.dumps({"t": round(time.monotonic() - start), "cycles": cycles, "requests": requests,
                      "errors": errors, "last_error": last_error, "final": True}), flush=True)


def main():
    if len(sys.argv) >= 3 and sys.argv[1] == "login":
        b = login(sys.argv[2])
        print(b.jar[urllib.parse.urlsplit(sys.argv[2]).netloc]["portcullis"])
    elif len(sys.argv) == 5 and sys.argv[1] == "flows":
        flows(sys.argv[2], float(sys.argv[3]), float(sys.argv[4]))
    else:
        print(__doc__, file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
