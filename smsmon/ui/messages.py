"""Messages the app posts to itself."""

from __future__ import annotations

from textual.message import Message


class DataChanged(Message):
    """New events are stored up to `event_id`. A burst keeps only the newest (can_replace)."""

    def __init__(self, event_id: int) -> None:
        super().__init__()
        self.event_id = event_id

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, DataChanged)
