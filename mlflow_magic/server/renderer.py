"""MLflow's own pages, made to work where notebooks show them: the notebook trace renderer
under any path prefix (a Jupyter proxy, a kernel pass), and the UI in a frame of another
site whose storage the browser denies (VS Code's webview, Colab).

Imported by the app every worker serves (app.py).
"""

from __future__ import annotations

import re
from pathlib import Path

#: MLflow's notebook trace renderer page, under its static files.
TRACE_RENDERER = "lib/notebook-trace-renderer/index.html"
#: Renderer links into the UI are root-absolute (``/#/experiments/...``); behind a proxy prefix
#: they must stay under it, so clicks on them are made relative to the page's base.
_RELATIVE_UI_LINKS = (
    '<script>["click","auxclick"].forEach(function(t){document.addEventListener(t,'
    'function(e){var a=e.target.closest&&e.target.closest(\'a[href^="/#"]\');'
    'if(a)a.setAttribute("href",a.getAttribute("href").slice(1));},true);});</script>')


def relative_renderer_page(text: str) -> str | None:
    """The trace renderer's page, made to work under any path prefix; None if unknown.

    Its ``<base href="/">`` and ``src="/static-files/..."`` send the browser to the
    origin's root, which behind ``/proxy/<port>/`` (Jupyter, JupyterHub) is not
    MLflow. A base relative to the page's own URL (``../../../``) is MLflow's root
    wherever it is served; the script, its chunks and its REST calls follow it.
    """
    up = "../" * (TRACE_RENDERER.count("/") + 1)
    new = re.sub(r'<base href="/"\s*/?>', f'<base href="{up}">', text)
    new = re.sub(r'(src|href)="/static-files/', r'\1="static-files/', new)
    if new == text or "<base" not in new:
        return None  # a renderer of another shape: serve it as MLflow made it
    new = new.replace("</head>", _RELATIVE_UI_LINKS + "</head>", 1)
    return storage_safe_index(new) or new


def serve_relative_trace_renderer(flask_app) -> bool:
    """Serve :func:`relative_renderer_page` for the renderer; False if MLflow changed shape."""
    original = flask_app.view_functions.get("serve_static_file")
    if original is None or not flask_app.static_folder:
        return False
    from flask import Response

    def serve_static_file(path: str):
        if path != TRACE_RENDERER:
            return original(path)
        try:
            text = (Path(flask_app.static_folder) / TRACE_RENDERER).read_text()
        except OSError:
            return original(path)
        page = relative_renderer_page(text)
        if page is None:
            return original(path)
        return Response(page, mimetype="text/html", headers={"Cache-Control": "no-cache"})

    flask_app.view_functions["serve_static_file"] = serve_static_file
    return True


#: MLflow's UI reads ``localStorage`` as it starts, and throws when the browser denies it,
#: as browsers do in a frame of another site with third-party storage blocked (Chromium's
#: default, Safari, Firefox strict). Where it is denied, the page gets storage that lasts
#: as long as the page: settings such as column widths are then not kept.
MEMORY_STORAGE = (
    "<script>(function(){function mem(){var d=new Map();return{"
    "getItem:function(k){return d.has(String(k))?d.get(String(k)):null},"
    "setItem:function(k,v){d.set(String(k),String(v))},"
    "removeItem:function(k){d.delete(String(k))},clear:function(){d.clear()},"
    "key:function(i){return Array.from(d.keys())[i]||null},"
    "get length(){return d.size}}}"
    "['localStorage','sessionStorage'].forEach(function(n){try{window[n].getItem('_')}"
    "catch(e){try{Object.defineProperty(window,n,{value:mem(),configurable:true})}"
    "catch(e2){}}})})();</script>")


def storage_safe_index(text: str) -> str | None:
    """MLflow's ``index.html`` (or the trace renderer's page) with :data:`MEMORY_STORAGE`
    before its scripts; None if the page has no ``<head>`` to put it in."""
    if "<head>" not in text:
        return None
    return text.replace("<head>", "<head>" + MEMORY_STORAGE, 1)


def serve_storage_safe_index(flask_app) -> bool:
    """Serve :func:`storage_safe_index` for the UI's page; False if MLflow changed shape."""
    original = flask_app.view_functions.get("serve")
    if original is None or not flask_app.static_folder:
        return False
    from flask import Response

    def serve():
        try:
            text = (Path(flask_app.static_folder) / "index.html").read_text()
        except OSError:
            return original()
        page = storage_safe_index(text)
        if page is None:
            return original()
        return Response(page, mimetype="text/html", headers={"Cache-Control": "no-cache"})

    flask_app.view_functions["serve"] = serve
    return True
