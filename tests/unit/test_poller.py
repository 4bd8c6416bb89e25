"""The poller with a scripted driver (our own seam): a stop racing a poll's answer."""

import asyncio

from gateway.core.clock import SystemClock
from gateway.core.items import Item
from gateway.core.messages import Sample
from gateway.runtime.poller import Poller, Schedule


class RacingDriver:
    """A driver whose poll waits like pymodbus does: inside ``asyncio.wait_for``."""

    id = "dev"
    disabled: dict[str, str] = {}  # noqa: RUF012 - read only

    def __init__(self) -> None:
        self.waiting = asyncio.Event()
        self.answer: asyncio.Future[Sample] | None = None

    async def poll(self) -> Sample:
        self.answer = asyncio.get_running_loop().create_future()
        self.waiting.set()
        return await asyncio.wait_for(self.answer, 10)


def quiet(item: Item) -> None:
    pass


async def test_a_stop_that_lands_as_the_answer_arrives_still_stops_the_poller() -> None:
    driver = RacingDriver()
    poller = Poller(driver, Schedule(60.0, 3, 60.0), quiet, SystemClock())
    task = asyncio.create_task(poller.run())
    await driver.waiting.wait()
    await asyncio.sleep(0)  # let wait_for's inner task start waiting on the answer
    assert driver.answer is not None
    driver.answer.set_result(Sample("dev", 0.0, ()))
    task.cancel()  # in the same loop iteration: Python 3.11's wait_for swallows this
    done, _ = await asyncio.wait({task}, timeout=2.0)
    assert task in done, "the poller ignored its stop (it would sleep a whole interval)"
    assert task.cancelled()
