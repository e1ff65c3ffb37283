#!/usr/bin/env python3
"""Logs a user in as a browser would, starting at URL (a page that redirects to the
provider: authgate's /oauth2/start or a protected page behind a proxy), through the test
provider's login and consent forms, and prints the Cookie header the browser then sends to
the start URL's origin. Used by scripts/bench-check.sh.

    scripts/oidc_login.py URL USER"""
import http.cookiejar
import re
import sys
import urllib.error
import urllib.parse
import urllib.request

url, user = sys.argv[1], sys.argv[2]
jar = http.cookiejar.CookieJar()


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar), NoRedirect)
origin = urllib.parse.urlsplit(url).netloc
body = None
for _ in range(20):
    request = urllib.request.Request(url, data=body, headers={"Accept": "text/html"})
    body = None
    try:
        response = opener.open(request)
        status, headers, page = response.status, response.headers, response.read().decode()
    except urllib.error.HTTPError as error:
        status, headers, page = error.code, error.headers, error.read().decode()
    if status in (301, 302, 303):
        url = urllib.parse.urljoin(url, headers["Location"])
        if urllib.parse.urlsplit(url).netloc == origin and "/oauth2/" not in url:
            break  # back on the application, logged in
        continue
    form = re.search(r'<form[^>]*action="([^"]+)"', page)
    if status == 200 and form and "interaction" in form.group(1):
        fields = dict(re.findall(r'<input[^>]*name="([^"]+)"[^>]*value="([^"]*)"', page))
        fields.update({"login": user, "password": "x"})
        url, body = urllib.parse.urljoin(url, form.group(1)), urllib.parse.urlencode(fields).encode()
        continue
    break
host = origin.split(":")[0]
cookies = [f"{c.name}={c.value}" for c in jar if c.domain in (host, host + ".local")]
if not any("session" in c for c in cookies):
    sys.exit(f"no session cookie after the login (last status {status} at {url})")
print("; ".join(cookies))
