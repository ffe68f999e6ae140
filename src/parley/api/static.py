"""/static: Parley's served files, with the embeddable ones readable from any website.

The widget loader (`/static/messenger/widget.js`) runs on customers' pages and `import()`s
its ES modules and stylesheet from Parley's origin; module scripts are fetched in CORS mode,
so those files (and the JS client they import) say `Access-Control-Allow-Origin: *`. They are
public and carry no credentials; every other static file keeps the same-origin default.
"""

from __future__ import annotations

import os

from fastapi.staticfiles import StaticFiles
from starlette.responses import Response
from starlette.types import Scope

# Paths under /static that third-party pages may load (prefixes, relative to the directory).
EMBEDDABLE_PREFIXES = ("messenger/", "client.js", "client/")


def is_embeddable(path: str) -> bool:
    return path.replace(os.sep, "/").startswith(EMBEDDABLE_PREFIXES)


class ParleyStaticFiles(StaticFiles):
    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        if is_embeddable(path):
            response.headers["Access-Control-Allow-Origin"] = "*"
        return response
