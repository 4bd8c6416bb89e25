"""Small asyncio glue the standard library lacks on Python 3.11."""

import asyncio


def raise_if_cancelling() -> None:
    """Honour a stop that ``asyncio.wait_for`` swallowed.

    On Python 3.11 ``wait_for`` returns the inner result instead of raising when the cancel
    lands as the awaited future completes (CPython gh-86296, fixed in 3.12). aiomqtt waits for
    CONNACK, SUBACK and PUBACK that way and pymodbus for every response, so without this check
    after such an await a stop can be lost for good and the daemon never exits.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
