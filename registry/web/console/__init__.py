"""The web console at /ui: server-rendered pages on the registry's use cases.

app.py       routes: pages and actions behind the session guard, login, logout, static files
security.py  the session cookie, the API's role rules, CSRF and origin checks
sessions.py  server-side sessions (opaque id -> token hash, CSRF token, expiry)
pages.py     GET pages; views.py reads what they show; charts.py (pure) draws the rollout charts
actions.py   POST actions through the same use cases as the REST API; forms.py parses forms
render.py    the Jinja environment, page context, HTML error answers
"""
