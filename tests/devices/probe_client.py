"""A patient's side of the bandwidth check (R-DEV), run as its own process (in a network
namespace behind a shaped link): probe the download and the upload as the /check page
does, send the verdict request and print the server's answer as JSON.

    python probe_client.py BASE_URL TOKEN
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time

import aiohttp

WINDOWS_CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36"
)
SMALLEST = 64 * 1024
LARGEST = 4 * 1024 * 1024


def sized(kbps: float) -> int:
    """A probe that lasts about a second at the speed just measured."""
    return max(SMALLEST, min(int(kbps * 1000 / 8), LARGEST))


async def measure(
    session: aiohttp.ClientSession, base: str, headers: dict[str, str]
) -> dict[str, float]:
    """kbit/s each way: a small probe first, then one sized for about a second."""
    size, down = SMALLEST, 0.0
    for _ in range(2):
        url = f"{base}/api/v1/device-check/probe?bytes={size}"
        async with session.get(url, headers=headers) as resp:
            resp.raise_for_status()
            began = time.monotonic()  # from the headers on: the body's time on the wire
            got = len(await resp.read())
        down = got * 8 / (time.monotonic() - began) / 1000
        size = sized(down)
    size, up = SMALLEST, 0.0
    for _ in range(2):
        url = f"{base}/api/v1/device-check/probe"
        async with session.post(url, data=os.urandom(size), headers=headers) as resp:
            resp.raise_for_status()
            up = float((await resp.json())["kbps"])
        size = sized(up)
    return {"download_kbps": down, "upload_kbps": up}


async def main(base: str, token: str) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        speed = await measure(session, base, headers)
        body = {
            "channel": "chat",
            "user_agent": WINDOWS_CHROME,
            "camera": None,
            "microphone": False,
            "bandwidth_kbps": min(speed.values()),
        }
        async with session.post(
            f"{base}/api/v1/device-check?lang=en", json=body, headers=headers
        ) as resp:
            verdict = await resp.json()
    print(json.dumps({"speed": speed, "status": resp.status, "verdict": verdict}))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
