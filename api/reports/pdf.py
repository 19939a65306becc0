"""Printing the report's HTML to PDF with headless Chromium (Debian ``chromium``, ``make browser``).

The page is opened from the local file with networking switched off in the browser; it holds no
script and no external reference, so the PDF shows exactly what the HTML shows.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

CANDIDATES = ("chromium", "chromium-browser", "google-chrome")
TIMEOUT_SECONDS = 120


def chromium() -> str | None:
    """The path of a Chromium executable, or None."""
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


class PdfError(RuntimeError):
    """The PDF could not be printed (no Chromium, a crash, a timeout); the message says which."""


def print_pdf(html_path: Path, pdf_path: Path) -> Path:
    """Print ``html_path`` to ``pdf_path`` (A4, no browser header or footer)."""
    exe = chromium()
    if exe is None:
        raise PdfError("Chromium is not installed (make browser installs Debian's chromium)")
    with tempfile.TemporaryDirectory(prefix="peerlens-pdf-") as profile:
        cmd = [
            exe,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--proxy-server=127.0.0.1:9",  # nothing the page could ask for would leave the machine
            "--proxy-bypass-list=<-loopback>",
            f"--user-data-dir={profile}",
            "--no-pdf-header-footer",
            f"--print-to-pdf={pdf_path}",
            html_path.resolve().as_uri(),
        ]
        try:
            done = subprocess.run(cmd, capture_output=True, timeout=TIMEOUT_SECONDS, check=False)
        except subprocess.TimeoutExpired:
            raise PdfError(f"Chromium did not finish printing within {TIMEOUT_SECONDS} s") from None
    if not pdf_path.is_file() or pdf_path.stat().st_size == 0:
        raise PdfError(f"Chromium printed no PDF (exit status {done.returncode})")
    return pdf_path
