"""Where the docs site check finds a headless Chromium: `$CHROMIUM`, `chromium`/`chromium-browser` on the PATH
(Debian, Homebrew), or the macOS app bundles of Chromium and Google Chrome. Run as a script: print it, exit 1 if none."""
from __future__ import annotations

import os
import shutil
import sys

MAC_APPS = ["/Applications/Chromium.app/Contents/MacOS/Chromium",
            "/Applications/Google Chrome.app/Contents/MacOS/Google Chrome"]


def find_browser() -> str | None:
    found = [os.environ.get("CHROMIUM"), shutil.which("chromium"), shutil.which("chromium-browser"), *MAC_APPS]
    return next((b for b in found if b and os.path.exists(b)), None)


if __name__ == "__main__":
    path = find_browser()
    print(path or "no Chromium found")
    sys.exit(0 if path else 1)
