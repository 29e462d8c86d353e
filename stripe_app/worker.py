"""Placeholder until the inbox worker lands."""


class Worker:
    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None


_worker = Worker()


def get_worker() -> Worker:
    return _worker
