"""Client side of export integrity: download a streamed export and check it against its receipt.

Used by ``peerlens download``; any HTTP client can do the same (README, "Checking an export"):

1. ``GET`` the export and keep the ``X-Request-Id`` (or ``Peerlens-Export-Receipt``) header;
2. count the bytes and hash them with SHA-256 while saving;
3. ``GET`` the receipt: it must say ``complete: true`` with the same ``bytes`` and ``sha256``.

The file is written to ``FILE.part`` and renamed only once it matches, so a truncated download
never sits under the name a pipeline reads.
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass
from urllib.parse import urljoin

import httpx

RECEIPT_HEADER = "Peerlens-Export-Receipt"


class IncompleteExport(Exception):
    """The download does not match what the server says it sent (or the server says it failed)."""


@dataclass(frozen=True)
class Downloaded:
    path: str
    bytes: int
    sha256: str
    rows: int | None
    receipt_url: str


def _receipt(client: httpx.Client, url: str, headers: dict[str, str], wait: float) -> dict:
    # The server writes the receipt when its generator ends, a moment after the last byte.
    deadline = time.monotonic() + wait
    while True:
        r = client.get(url, headers=headers)
        if r.status_code == 200:
            return r.json()
        if r.status_code != 404 or time.monotonic() >= deadline:
            raise IncompleteExport(f"no receipt for this export (HTTP {r.status_code} from {url})")
        time.sleep(0.1)


def download(url: str, output: str, token: str | None = None, *, wait: float = 10.0, timeout: float = 300.0):
    """Download the export at ``url`` to ``output`` and verify it; :class:`IncompleteExport` if not.

    Parameters
    ----------
    url : str
        Full URL of an export, e.g. ``http://host/studies/1/exports/long?format=parquet``.
    token : str, optional
        Bearer token (``PEERLENS_TOKEN``).
    wait : float
        Seconds to wait for the receipt after the last byte.
    """
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    part = output + ".part"
    sha, size = hashlib.sha256(), 0
    try:
        with httpx.Client(timeout=timeout, follow_redirects=False) as client:
            try:
                with client.stream("GET", url, headers=headers) as r:
                    if r.status_code != 200:
                        r.read()
                        raise IncompleteExport(f"HTTP {r.status_code}: {r.text[:300]}")
                    receipt_path = r.headers.get(RECEIPT_HEADER)
                    if not receipt_path:
                        raise IncompleteExport(f"the response names no receipt ({RECEIPT_HEADER} header)")
                    with open(part, "wb") as fh:
                        for chunk in r.iter_bytes():
                            sha.update(chunk)
                            size += len(chunk)
                            fh.write(chunk)
            except httpx.HTTPError as exc:  # e.g. the server closed the stream before its end
                if "receipt_path" not in locals() or not receipt_path:
                    raise IncompleteExport(f"download failed: {type(exc).__name__}") from None
            receipt_url = urljoin(url, receipt_path)
            got = _receipt(client, receipt_url, headers, wait)
        if not got.get("complete"):
            raise IncompleteExport(
                f"the server reports the export incomplete ({got.get('error') or 'stream ended early'})"
            )
        if got.get("bytes") != size or got.get("sha256") != sha.hexdigest():
            raise IncompleteExport(
                f"received {size} bytes, the server sent {got.get('bytes')}; the SHA-256 does not match"
            )
        os.replace(part, output)
        return Downloaded(output, size, sha.hexdigest(), got.get("rows"), receipt_url)
    finally:
        if os.path.exists(part):
            os.remove(part)
