"""Placeholder until the batched click writer lands."""


class ClickWriter:
    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None


_writer = ClickWriter()


def get_click_writer() -> ClickWriter:
    return _writer
